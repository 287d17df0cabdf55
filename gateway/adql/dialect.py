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

    class Parser(TSQL.Parser):
        pass
