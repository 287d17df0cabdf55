"""Generated and mutated ADQL for robustness runs (issue 22): a query that a client sends must
get a DALI answer (a result, or an error document with a 4xx status), never an HTTP 500, a
broken stream or a runaway process.

:func:`queries` yields ``n`` queries from a seeded generator over a table's columns: valid
ADQL 2.1 shapes (functions, geometry, subqueries, joins, set operations, CASE, CAST), then the
same mutated the ways fuzzers and users break them (tokens dropped, duplicated, swapped or
spliced in; quotes and parentheses unbalanced; deep nesting; huge, tiny and special numbers;
control and non-ASCII characters).  Used by ``tests/test_fuzz.py`` (a bounded profile) and
``benchmarks/fuzz.py`` (the full run).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

FUNCS1 = [
    "ABS",
    "CEILING",
    "FLOOR",
    "SQRT",
    "EXP",
    "LOG",
    "LOG10",
    "SIN",
    "COS",
    "TAN",
    "ASIN",
    "ACOS",
    "ATAN",
    "DEGREES",
    "RADIANS",
    "LOWER",
    "UPPER",
    "ROUND",
    "TRUNCATE",
    "COORD1",
    "COORD2",
    "AREA",
    "COUNT",
]
FUNCS2 = ["POWER", "MOD", "ATAN2", "ROUND", "TRUNCATE"]
AGGS = ["COUNT", "SUM", "AVG", "MIN", "MAX"]
NUMBERS = [
    "0",
    "1",
    "-1",
    "2.5",
    "1e10",
    "1E-300",
    "1e308",
    "1e999",
    "-0.0",
    "0x1F",
    "123456789012345678901234567890",
    "9223372036854775807",
    "9223372036854775808",
    "3.14159",
    ".5",
    "5.",
    "1e",
    "NaN",
]
STRINGS = ["'a'", "''", "'%'", "'it''s'", "'\u00e9\u6f22'", "'\\'", "'x" + "y" * 300 + "'"]
JUNK = [
    "(",
    ")",
    ",",
    "'",
    '"',
    ";",
    "--",
    "/*",
    "*/",
    "\x00",
    "\x07",
    "\u2028",
    "\ufeff",
    "\U0001f600",
    "||",
    "SELECT",
    "FROM",
    "WHERE",
    "JOIN",
    "ON",
    "UNION",
    "ORDER BY",
    "GROUP BY",
    "HAVING",
    "TOP",
    "DISTINCT",
    "AS",
    "NULL",
    "IS",
    "NOT",
    "IN",
    "LIKE",
    "BETWEEN",
    "AND",
    "OR",
    "CASE",
    "WHEN",
    "END",
    "CAST",
    "*",
    "POINT",
    "CIRCLE",
    "CONTAINS",
    "1=1",
    "OFFSET",
    "WITH",
    "TAP_UPLOAD.x",
    "TAP_SCHEMA.tables",
    "%",
    "<=",
    ">=",
    "<>",
    "!=",
    "=",
    "+",
    "-",
    "/",
    "e",
    ".",
    "..",
    "ILIKE",
    "LIMIT",
    "::",
    "$1",
    "?",
]


class Generator:
    """Random ADQL over ``table`` (qualified name) with numeric ``columns`` and ``ra``/``dec``."""

    def __init__(self, seed: int, table: str, columns: list[str], ra: str, dec: str, text_column: str | None = None):
        self.r = random.Random(seed)
        self.table, self.columns, self.ra, self.dec, self.text = table, columns, ra, dec, text_column

    def col(self, alias: str = "") -> str:
        return (alias + "." if alias else "") + self.r.choice(self.columns)

    def num(self, depth: int = 0, alias: str = "") -> str:
        r = self.r
        k = r.random()
        if depth > 3 or k < 0.3:
            return r.choice([self.col(alias), r.choice(NUMBERS[:9])])
        if k < 0.5:
            return f"{r.choice(FUNCS1[:13])}({self.num(depth + 1, alias)})"
        if k < 0.6:
            return f"{r.choice(FUNCS2)}({self.num(depth + 1, alias)}, {self.num(depth + 1, alias)})"
        if k < 0.8:
            return f"({self.num(depth + 1, alias)} {r.choice('+-*/')} {self.num(depth + 1, alias)})"
        if k < 0.85:
            return (
                f"DISTANCE(POINT('ICRS', {self.ra}, {self.dec}), POINT('ICRS', {r.uniform(0, 360):.3f}, "
                f"{r.uniform(-90, 90):.3f}))"
            )
        if k < 0.9:
            return f"CAST({self.num(depth + 1, alias)} AS {r.choice(['INTEGER', 'DOUBLE PRECISION', 'REAL', 'BIGINT', 'SMALLINT'])})"
        return f"CASE WHEN {self.cond(depth + 1, alias)} THEN {self.num(depth + 1, alias)} ELSE {self.num(depth + 1, alias)} END"

    def cond(self, depth: int = 0, alias: str = "") -> str:
        r = self.r
        k = r.random()
        if depth > 3 or k < 0.4:
            return f"{self.num(depth + 1, alias)} {r.choice(['<', '>', '=', '<=', '>=', '<>'])} {self.num(depth + 1, alias)}"
        if k < 0.55:
            return f"({self.cond(depth + 1, alias)} {r.choice(['AND', 'OR'])} {self.cond(depth + 1, alias)})"
        if k < 0.62:
            return f"NOT {self.cond(depth + 1, alias)}"
        if k < 0.7:
            return f"{self.col(alias)} BETWEEN {r.choice(NUMBERS[:6])} AND {r.choice(NUMBERS[:9])}"
        if k < 0.75:
            return f"{self.col(alias)} IS {'NOT ' if r.random() < 0.5 else ''}NULL"
        if k < 0.8:
            return f"{self.col(alias)} IN ({', '.join(r.choice(NUMBERS[:9]) for _ in range(r.randint(1, 5)))})"
        if k < 0.85 and self.text:
            return f"{self.text} LIKE {r.choice(STRINGS[:4])}"
        if k < 0.9:
            return f"{self.col(alias)} IN (SELECT {self.col()} FROM {self.table} WHERE {self.cond(depth + 2)})"
        ra, dec, rad = r.uniform(0, 360), r.uniform(-90, 90), r.choice(["0.01", "0.5", "1", "0", "180", "-1"])
        return f"1 = CONTAINS(POINT('ICRS', {self.ra}, {self.dec}), CIRCLE('ICRS', {ra:.4f}, {dec:.4f}, {rad}))"

    def select(self) -> str:
        r = self.r
        k = r.random()
        top = f"TOP {r.choice(['1', '5', '100', '0', '2147483648'])} " if r.random() < 0.7 else ""
        distinct = "DISTINCT " if r.random() < 0.1 else ""
        if k < 0.15:
            agg = r.choice(AGGS)
            body = f"SELECT {agg}({'*' if agg == 'COUNT' and r.random() < 0.5 else self.col()}) AS n FROM {self.table}"
            if r.random() < 0.5:
                body = f"SELECT {self.col()} AS g, COUNT(*) AS n FROM {self.table} GROUP BY {self.col()}"
            return body + (f" WHERE {self.cond()}" if r.random() < 0.5 else "")
        if k < 0.25:
            return (
                f"SELECT {top}a.{self.columns[0]}, b.{self.columns[-1]} FROM {self.table} AS a "
                f"JOIN {self.table} AS b ON a.{self.columns[0]} = b.{self.columns[0]} WHERE {self.cond(alias='a')}"
            )
        if k < 0.3:
            return f"SELECT {top}* FROM (SELECT {self.col()}, {self.col()} AS x FROM {self.table}) AS s"
        if k < 0.35:
            return (
                f"SELECT {self.col()} FROM {self.table} {r.choice(['UNION', 'UNION ALL', 'EXCEPT', 'INTERSECT'])} "
                f"SELECT {self.col()} FROM {self.table}"
            )
        if k < 0.4:
            return f"WITH w AS (SELECT {self.col()} AS v FROM {self.table}) SELECT {top}v FROM w"
        cols = ", ".join(f"{self.num()} AS c{i}" if r.random() < 0.5 else self.col() for i in range(r.randint(1, 4)))
        q = f"SELECT {top}{distinct}{cols} FROM {self.table}"
        if r.random() < 0.7:
            q += f" WHERE {self.cond()}"
        if r.random() < 0.3:
            q += f" ORDER BY {r.randint(1, 2)} {r.choice(['', 'ASC', 'DESC'])}"
        return q

    def mutate(self, q: str) -> str:
        r = self.r
        words = q.split(" ")
        for _ in range(r.randint(1, 4)):
            k = r.random()
            i = r.randrange(len(words)) if words else 0
            if k < 0.2 and words:
                del words[i]
            elif k < 0.4:
                words.insert(i, r.choice(JUNK + NUMBERS + STRINGS))
            elif k < 0.5 and words:
                words.insert(i, words[i])
            elif k < 0.6 and len(words) > 1:
                j = r.randrange(len(words))
                words[i], words[j] = words[j], words[i]
            elif k < 0.7 and words:
                w = words[i]
                p = r.randrange(len(w) + 1)
                words[i] = w[:p] + r.choice(JUNK) + w[p:]
            elif k < 0.75:
                n = r.choice([10, 63, 65, 100, 1000, 5000])
                words.insert(i, "(" * n + "1" + ")" * n)
            elif k < 0.8:
                words.insert(i, r.choice(["NOT ", "- ", "ABS("]) * r.choice([10, 70, 3000]))
            elif k < 0.85:
                words.insert(i, " + ".join(["1"] * r.choice([10, 500, 3000])))
            elif k < 0.9:
                words.insert(i, r.choice(NUMBERS[9:]))
            else:
                words = words[: r.randrange(len(words) + 1)]
        return " ".join(words)

    def queries(self, n: int, mutated: float = 0.6) -> Iterator[str]:
        for _ in range(n):
            q = self.select()
            yield self.mutate(q) if self.r.random() < mutated else q


def queries(n: int, seed: int = 22) -> Iterator[str]:
    """``n`` queries over the embedded demo table ``demo.sdss_stars`` (as in config.yaml)."""
    g = Generator(
        seed,
        "demo.sdss_stars",
        ["objid", "ra", "dec", "psfmag_u", "psfmag_g", "psfmagerr_u", "run", "camcol", "field"],
        "ra",
        "dec",
    )
    return g.queries(n)


FORMATS = ["votable", "votable/td", "csv", "tsv", "application/json", "fits", "votable/b"]


def run(client, n: int, seed: int = 22, maxrec: int = 50) -> dict:
    """Send ``n`` generated queries (cycling through the output formats) to a Flask test
    client's ``/tap/sync`` and read each answer whole.  Returns counts by HTTP status, the
    queries answered 5xx or whose stream failed (``bad``), and the slowest (``slowest``:
    seconds, query)."""
    import time
    from collections import Counter

    status: Counter = Counter()
    bad, slowest = [], (0.0, "")
    for i, q in enumerate(queries(n, seed)):
        fmt = FORMATS[i % len(FORMATS)]
        t0 = time.perf_counter()
        try:
            r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": q, "RESPONSEFORMAT": fmt, "MAXREC": maxrec})
            body = r.data
        except Exception as e:  # noqa: BLE001 - a stream that breaks is a finding
            status["exception"] += 1
            bad.append((f"exception {type(e).__name__}: {e}", fmt, q))
            continue
        took = time.perf_counter() - t0
        slowest = max(slowest, (took, q))
        status[r.status_code] += 1
        if r.status_code >= 500 or (r.status_code >= 400 and b'QUERY_STATUS" value="ERROR"' not in body):
            bad.append((r.status_code, fmt, q))
        elif r.status_code == 200 and b"internal error" in body:
            bad.append(("in-band internal error", fmt, q))
    return {"status": dict(status), "bad": bad, "slowest": slowest}
