"""Exact evaluation of an ADQL query by the gateway over rows an upstream returned.

Remote archives that cannot run a whole query (REST services such as SkyMapper's sm-cone or
the MAST catalogs API) push down what their upstream understands, fetch those rows, and let
the gateway evaluate the complete validated query on them in DuckDB (the residual).  Because
the pushed-down part only narrows the rows (never changes them) the answer is exact.

* :func:`single_table` — the one table a residual query may read, with its alias.
* :func:`conjuncts`, :func:`constant` — top-level AND terms of a WHERE and constant folding.
* :func:`find_cone` — the cone of a ``CONTAINS(POINT, CIRCLE)=1`` / ``DISTANCE(...) < r`` term.
* :func:`any_rows` — whether any rows of the table answer the query (no WHERE/ORDER/GROUP).
* :func:`residual_sql` / :func:`evaluate` — DuckDB SQL over a registered view, and its run.
"""
from __future__ import annotations

import duckdb
import pyarrow as pa
from sqlglot import exp

from .adql.geometry import GeometryTranslator
from .adql.validate import AdqlQuery, OutputColumn
from .archive import Cone
from .engine import normalize_batch, output_columns
from .faults import UsageFault
from .rowstream import RowStream, limit_batches
from .schema import Table


def single_table(query: AdqlQuery, what: str) -> tuple[Table, str]:
    """(table, alias) of a query on exactly one table; UsageFault naming ``what`` otherwise."""
    tables = list(query.ast.find_all(exp.Table))
    if len(tables) != 1 or query.uploads:
        raise UsageFault(f"{what} answers queries on one table; joins, subqueries and uploads are not available")
    return tables[0].meta["gw_table"], tables[0].alias_or_name


def conjuncts(where: exp.Expression):
    """The top-level AND terms of a condition."""
    if isinstance(where, exp.And):
        yield from conjuncts(where.this)
        yield from conjuncts(where.expression)
    elif isinstance(where, exp.Paren):
        yield from conjuncts(where.this)
    else:
        yield where


def constant(node: exp.Expression):
    """Value of a constant expression (no column); ValueError otherwise."""
    if any(True for _ in node.find_all(exp.Column)):
        raise ValueError("not constant")
    with duckdb.connect() as con:
        return con.execute("SELECT " + node.sql(dialect="duckdb")).fetchone()[0]


def column_of(node: exp.Expression, alias: str, table: Table):
    """The table's column a node refers to (plain column reference), or None."""
    if isinstance(node, exp.Column) and (not node.table or node.table.lower() == alias.lower()):
        return table.column(node.name)
    return None


def _point_args(node) -> list:
    args = list(node.expressions) if isinstance(node, exp.Anonymous) and node.name.upper() == "POINT" else []
    return args[-2:]


def _is_pos(args, alias: str, table: Table) -> bool:
    cols = [column_of(a, alias, table) for a in args]
    return len(cols) == 2 and None not in cols and \
        [c.name.lower() for c in cols] == [table.ra_column.lower(), table.dec_column.lower()]


def cone_term(cond: exp.Expression, alias: str, table: Table) -> Cone | None:
    """The cone of one condition ``CONTAINS(POINT(ra, dec), CIRCLE(a, d, r)) = 1`` or
    ``DISTANCE(POINT(ra, dec), POINT(a, d)) < r`` (either point order, 2- or 4-argument
    DISTANCE) on the table's position columns with constant a, d, r; else None."""
    try:
        if isinstance(cond, exp.EQ):
            f = cond.this if isinstance(cond.this, exp.Contains) else cond.expression
            one = cond.expression if f is cond.this else cond.this
            if isinstance(f, exp.Contains) and constant(one) == 1:
                c = f.expression
                if _is_pos(_point_args(f.this), alias, table) and isinstance(c, exp.Anonymous) \
                        and c.name.upper() == "CIRCLE":
                    a, d, r = c.expressions[-3:]
                    return Cone(float(constant(a)), float(constant(d)), float(constant(r)))
        if isinstance(cond, (exp.LT, exp.LTE)) and isinstance(cond.this, exp.Anonymous) \
                and cond.this.name.upper() == "DISTANCE":
            args = cond.this.expressions
            pts = args if len(args) == 2 else []
            if len(args) == 4:
                pts = [exp.Anonymous(this="POINT", expressions=args[:2]),
                       exp.Anonymous(this="POINT", expressions=args[2:])]
            for mine, other in ((pts, pts[::-1]) if pts else ()):
                if _is_pos(_point_args(mine), alias, table):
                    a, d = _point_args(other)
                    return Cone(float(constant(a)), float(constant(d)), float(constant(cond.expression)))
    except (ValueError, TypeError, duckdb.Error):
        return None
    return None


def find_cone(tree: exp.Select, alias: str, table: Table) -> Cone | None:
    """The first top-level WHERE term that is a cone on the table's position (:func:`cone_term`)."""
    where = tree.args.get("where")
    for cond in conjuncts(where.this) if where is not None else ():
        cone = cone_term(cond, alias, table)
        if cone is not None:
            return cone
    return None


def any_rows(tree: exp.Select) -> bool:
    """True when any rows of the table answer the query (TAP 1.1 §2.7.4: without ORDER BY a
    TOP/MAXREC result is an arbitrary subset): no WHERE, ORDER BY, GROUP BY, HAVING, DISTINCT
    or aggregate."""
    if any(tree.args.get(k) for k in ("where", "order", "group", "having", "distinct")):
        return False
    return not any(True for _ in tree.find_all(exp.AggFunc))


def residual_sql(query: AdqlQuery, view: str, alias: str) -> str:
    """DuckDB SQL of the whole query (geometry translated) reading ``view`` under ``alias``."""
    tree = GeometryTranslator().rewrite(query.ast.copy())
    for t in tree.find_all(exp.Table):
        t.replace(exp.Table(this=exp.to_identifier(view, quoted=True),
                            alias=exp.TableAlias(this=exp.to_identifier(alias))))
    for col in tree.find_all(exp.Column):
        if col.args.get("db") is not None:
            col.set("db", None)
    return tree.sql(dialect="duckdb")


def evaluate(sql: str, view: str, rows: pa.Table, outputs: list[OutputColumn], maxrec: int | None) -> RowStream:
    """Run ``sql`` over ``rows`` registered as ``view``; at most ``maxrec`` rows, overflow set."""
    limited = sql if maxrec is None else f"SELECT * FROM ({sql}) AS _q LIMIT {maxrec + 1}"
    with duckdb.connect() as con:
        con.register(view, rows)
        try:
            result = con.sql(limited).to_arrow_table()
        except duckdb.Error as e:
            raise UsageFault(f"query failed: {str(e).splitlines()[0]}")
    batches = [normalize_batch(b) for b in result.to_batches()] or \
        [normalize_batch(pa.RecordBatch.from_pylist([], schema=result.schema))]
    stream = RowStream(output_columns(outputs, batches[0].schema), [])
    stream.batches = limit_batches(batches, maxrec, stream)
    return stream
