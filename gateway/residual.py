"""Reading the terms of a validated ADQL condition (used by the planner and by SQL
translators such as the HSC plugin's).

* :func:`conjuncts`, :func:`constant` — top-level AND terms of a WHERE and constant folding.
* :func:`column_of` — the declared column a plain column reference names.
* :func:`cone_term` — the cone of a ``CONTAINS(POINT, CIRCLE)=1`` / ``DISTANCE(...) < r`` term.
* :func:`polygon_term` — the vertices of a ``CONTAINS(POINT, BOX|POLYGON)=1`` term.
* :func:`contains_of` — the ``CONTAINS`` of a ``CONTAINS(...)=1`` term.
* :func:`any_rows` — whether any rows of the table answer the query (no WHERE/ORDER/GROUP).
"""

from __future__ import annotations

import duckdb
from sqlglot import exp

from .archive import Cone
from .schema import Table


def conjuncts(where: exp.Expression):
    """The top-level AND terms of a condition."""
    if isinstance(where, exp.And):
        yield from conjuncts(where.this)
        yield from conjuncts(where.expression)
    elif isinstance(where, exp.Paren):
        yield from conjuncts(where.this)
    else:
        yield where


def disjuncts(node: exp.Expression) -> list:
    """The top-level OR terms of a condition."""
    if isinstance(node, exp.Or):
        return disjuncts(node.this) + disjuncts(node.expression)
    if isinstance(node, exp.Paren):
        return disjuncts(node.this)
    return [node]


def constant(node: exp.Expression):
    """Value of a constant expression (no column); ValueError otherwise."""
    if isinstance(node, exp.Literal):  # the common case, without an engine
        if node.is_string:
            return node.name
        text = node.name
        return int(text) if text.lstrip("+-").isdigit() else float(text)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and node.this.is_number:
        return -constant(node.this)
    if any(True for _ in node.find_all(exp.Column)):
        raise ValueError("not constant")
    with duckdb.connect() as con:
        row = con.execute("SELECT " + node.sql(dialect="duckdb")).fetchone()
        return row[0] if row is not None else None


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
    return (
        len(cols) == 2
        and None not in cols
        and [c.name.lower() for c in cols if c is not None]
        == [(table.ra_column or "").lower(), (table.dec_column or "").lower()]
    )


def contains_of(cond: exp.Expression) -> exp.Contains | None:
    """The ``CONTAINS(...)`` of ``CONTAINS(...) = 1`` or ``1 = CONTAINS(...)`` (the constant
    may be any expression equal to 1); else None (ADQL 2.1 §4.2.7)."""
    if not isinstance(cond, exp.EQ):
        return None
    f = cond.this if isinstance(cond.this, exp.Contains) else cond.expression
    if not isinstance(f, exp.Contains):
        return None
    one = cond.expression if f is cond.this else cond.this
    try:
        return f if constant(one) == 1 else None
    except (ValueError, TypeError, duckdb.Error):
        return None


def cone_forms(cond: exp.Expression) -> list[tuple[list, list, exp.Expression]]:
    """The readings of a cone condition as ``(position args, centre args, radius node)``:
    ``CONTAINS(POINT(p), CIRCLE(c, r)) = 1`` gives one, ``DISTANCE(POINT(p), POINT(q)) < r``
    (or ``<=``, ``r > DISTANCE``, the 4-argument DISTANCE) gives both point orders.  The
    nodes are the query's own, left in place (ADQL 2.1 §4.2.7, §4.2.15).  Empty for any other
    condition."""
    if isinstance(cond, (exp.GT, exp.GTE)):
        dist, radius = cond.expression, cond.this
    elif isinstance(cond, (exp.LT, exp.LTE)):
        dist, radius = cond.this, cond.expression
    elif isinstance(cond, exp.EQ):
        f = contains_of(cond)
        c = f.expression if f is not None else None
        if f is None or not (isinstance(c, exp.Anonymous) and c.name.upper() == "CIRCLE" and len(c.expressions) >= 3):
            return []
        p = _point_args(f.this)
        return [(p, list(c.expressions[-3:-1]), c.expressions[-1])] if len(p) == 2 else []
    else:
        return []
    if not (isinstance(dist, exp.Anonymous) and dist.name.upper() == "DISTANCE"):
        return []
    args = list(dist.expressions)
    if len(args) == 4:
        p, q = args[:2], args[2:]
    elif len(args) == 2:
        p, q = _point_args(args[0]), _point_args(args[1])
    else:
        return []
    return [(p, q, radius), (q, p, radius)] if len(p) == len(q) == 2 else []


def cone_term(cond: exp.Expression, alias: str, table: Table) -> Cone | None:
    """The cone of one condition ``CONTAINS(POINT(ra, dec), CIRCLE(a, d, r)) = 1`` or
    ``DISTANCE(POINT(ra, dec), POINT(a, d)) < r`` (either point order, 2- or 4-argument
    DISTANCE; :func:`cone_forms`) on the table's position columns with constant a, d, r; else
    None."""
    for mine, (a, d), r in cone_forms(cond):
        if _is_pos(mine, alias, table):
            try:
                return Cone(float(constant(a)), float(constant(d)), float(constant(r)))
            except (ValueError, TypeError, duckdb.Error):
                return None
    return None


def polygon_term(cond: exp.Expression, alias: str, table: Table) -> list[tuple[float, float]] | None:
    """The vertices (ra, dec in degrees, ra in [0, 360)) of one condition
    ``CONTAINS(POINT(ra, dec), BOX(a, d, w, h) | POLYGON(a1, d1, ...)) = 1`` (either side of
    the ``=``) on the table's position columns with constant arguments; a BOX as its four
    corners a ± w/2, d ± h/2 (ADQL 2.1 §4.2.5, §4.2.13).  Else None."""
    f = contains_of(cond)
    if f is None:
        return None
    shape = f.expression
    if not (isinstance(shape, exp.Anonymous) and shape.name.upper() in ("BOX", "POLYGON")):
        return None
    if not _is_pos(_point_args(f.this), alias, table):
        return None
    nodes = list(shape.expressions)
    if nodes and isinstance(nodes[0], exp.Literal) and nodes[0].is_string:
        nodes = nodes[1:]  # the coordinate system (checked by the validator)
    try:
        v = [float(constant(n)) for n in nodes]
    except (ValueError, TypeError, duckdb.Error):
        return None
    if shape.name.upper() == "BOX":
        if len(v) != 4:
            return None
        a, d, w, h = v
        corners = [(a - w / 2, d - h / 2), (a + w / 2, d - h / 2), (a + w / 2, d + h / 2), (a - w / 2, d + h / 2)]
    else:
        if len(v) < 6 or len(v) % 2:
            return None
        corners = [(v[i], v[i + 1]) for i in range(0, len(v), 2)]
    return [(a % 360.0, d) for a, d in corners]


def any_rows(tree: exp.Select) -> bool:
    """True when any rows of the table answer the query (TAP 1.1 §2.7.4: without ORDER BY a
    TOP/MAXREC result is an arbitrary subset): no WHERE, ORDER BY, GROUP BY, HAVING, DISTINCT
    or aggregate."""
    if any(tree.args.get(k) for k in ("where", "order", "group", "having", "distinct")):
        return False
    return not any(True for _ in tree.find_all(exp.AggFunc))
