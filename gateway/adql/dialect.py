"""The ADQL 2.1 dialect for sqlglot (ADQL 2.1 REC §2, BNF in ``adql.bnf``).

ADQL's lexical syntax is SQL-92 plus ``TOP n``, ``OFFSET n`` without ``FETCH``, ``||`` string
concatenation and double-quoted delimited identifiers.  sqlglot's T-SQL dialect already parses
``TOP``; this dialect narrows it to ADQL: only ``"`` delimits identifiers (no ``[..]``), no
``#temp``/``@variable`` tokens.  What sqlglot still accepts beyond ADQL is rejected by
:mod:`gateway.adql.validate` (allow-list).

Its generator writes ADQL 2.1 for upstream TAP services (the ``ivoa`` kind), not T-SQL:
``TOP n ... OFFSET m`` (§2.2.3), ``||``, ``MOD``, ``TRUNCATE``, ``LOG10``, ``ATAN2`` (§2.3.2),
``REAL``/``DOUBLE PRECISION`` cast targets (§2.3.6), and no comments.
"""

from __future__ import annotations

from sqlglot import exp, generator
from sqlglot.dialects.tsql import TSQL
from sqlglot.generators.tsql import TSQLGenerator
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

    class Generator(TSQLGenerator):
        TYPE_MAPPING = {
            **TSQLGenerator.TYPE_MAPPING,
            exp.DType.DOUBLE: "DOUBLE PRECISION",
            exp.DType.FLOAT: "REAL",
            exp.DType.ROWVERSION: "TIMESTAMP",
        }
        TRANSFORMS = {
            **TSQLGenerator.TRANSFORMS,
            exp.Atan2: lambda self, e: self.func("ATAN2", e.this, e.expression),
            exp.Trunc: lambda self, e: self.func("TRUNCATE", e.this, e.args.get("decimals")),
        }

        def select_sql(self, expression: exp.Select) -> str:  # TOP and OFFSET together, no FETCH
            return generator.Generator.select_sql(self, expression)

        def offset_sql(self, expression: exp.Offset) -> str:
            return generator.Generator.offset_sql(self, expression)

        def dpipe_sql(self, expression: exp.DPipe) -> str:
            return self.binary(expression, "||")

        def mod_sql(self, expression: exp.Mod) -> str:
            return self.func("MOD", expression.this, expression.expression)

        def log_sql(self, expression: exp.Log) -> str:  # the parser reads LOG10(x) as Log(10, x)
            if expression.expression is not None and expression.this.name == "10":
                return self.func("LOG10", expression.expression)
            return self.func("LOG", expression.this, expression.expression)


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
        text = tree.sql(dialect=ADQL, copy=False, comments=False)
        if order is not None:
            text += " " + order.sql(dialect=ADQL)
        if offset is not None:
            text += " OFFSET " + offset.expression.sql(dialect=ADQL)
        return text
    return tree.sql(dialect=ADQL, copy=False, comments=False)
