"""The ADQL 2.1 dialect for sqlglot (ADQL 2.1 REC §2, BNF in ``adql.bnf``).

ADQL's lexical syntax is SQL-92 plus ``TOP n``, ``OFFSET n`` without ``FETCH``, ``||`` string
concatenation and double-quoted delimited identifiers.  sqlglot's T-SQL dialect already parses
``TOP``; this dialect narrows it to ADQL: only ``"`` delimits identifiers (no ``[..]``), no
``#temp``/``@variable`` tokens.  What sqlglot still accepts beyond ADQL is rejected by
:mod:`gateway.adql.validate` (allow-list).
"""

from __future__ import annotations

from sqlglot.dialects.tsql import TSQL
from sqlglot.tokens import TokenType


class ADQL(TSQL):
    class Tokenizer(TSQL.Tokenizer):
        IDENTIFIERS = ['"']
        QUOTES = ["'"]
        VAR_SINGLE_TOKENS = set()
        KEYWORDS = {k: v for k, v in TSQL.Tokenizer.KEYWORDS.items() if not k.startswith(("#", "@"))}
        KEYWORDS["TOP"] = TokenType.TOP

    class Parser(TSQL.Parser):  # type: ignore[valid-type,misc]  # sqlglot's dialect classes
        pass


def adql_text(tree) -> str:
    """ADQL text of a validated tree.  A top-level UNION/EXCEPT/INTERSECT keeps its ORDER BY
    and OFFSET after the last SELECT (ADQL 2.1 §2.2.4) instead of the derived table the
    T-SQL-based generator wraps around it."""
    from sqlglot import exp

    if isinstance(tree, (exp.Union, exp.Except, exp.Intersect)) and (tree.args.get("order") or tree.args.get("offset")):
        tree = tree.copy()
        order, offset = tree.args.get("order"), tree.args.get("offset")
        tree.set("order", None)
        tree.set("offset", None)
        text = tree.sql(dialect=ADQL, copy=False)
        if order is not None:
            text += " " + order.sql(dialect=ADQL)
        if offset is not None:
            text += " OFFSET " + offset.expression.sql(dialect=ADQL)
        return text
    return tree.sql(dialect=ADQL, copy=False)
