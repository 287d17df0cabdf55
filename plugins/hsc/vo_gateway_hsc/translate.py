"""ADQL -> HSC-SSP SQL (PostgreSQL with the HSC stored functions, docs/upstreams.md §1.3), by AST
transforms on the validated query, never string edits.

| ADQL | HSC SQL |
|---|---|
| ``CONTAINS(POINT(ra, dec), CIRCLE(a, d, r)) = 1`` | ``coneSearch(coord, a, d, r*3600)`` (arcsec) |
| ``DISTANCE(POINT(ra, dec), POINT(a, d)) < r`` | ``coneSearch(coord, a, d, r*3600)`` |
| ``CONTAINS(POINT(ra, dec), BOX(a, d, w, h)) = 1`` | ``boxSearch(coord, a-w/2, a+w/2, d-h/2, d+h/2)`` |
| ``ra BETWEEN a1 AND a2 AND dec BETWEEN d1 AND d2`` | ``boxSearch(coord, a1, a2, d1, d2)`` |
| an OR of cones and boxes | the OR of their ``coneSearch``/``boxSearch`` |
| a cone around another table's columns (``CONTAINS(POINT(f.ra, f.dec), CIRCLE(u.ra, u.dec, r)) = 1``, ``DISTANCE(...) < r``; in WHERE, ON and subqueries) | ``coneSearch(f.coord, u.ra, u.dec, (r) * 3600)`` |
| ``TAP_UPLOAD.t AS u`` | ``(VALUES (...), ...) AS u(col, ...)``, the first row cast to the declared types (at most ``upload_rows`` rows) |
| ``TOP n`` | ``LIMIT n`` |
| ``flag = 1`` / ``flag = 0`` on a boolean column (ADQL has no boolean literals) | ``flag`` / ``NOT flag`` |
| gateway schema (``hsc_s23b_wide``) | HSC schema (``s23b_wide``) |
| ``SELECT *`` of one table | ``SELECT *`` (the validator's expansion is folded back) |
| ``LOG10(x)`` / ``LOG(x)`` | ``LOG(x)`` (base 10 in PostgreSQL) / ``LN(x)`` |
| ``ROUND(x, n)``, ``TRUNCATE(x, n)`` | ``ROUND(CAST(x AS NUMERIC), n)``, ``TRUNC(CAST(x AS NUMERIC), n)`` (PostgreSQL has these for numeric only) |
| other ADQL functions | PostgreSQL equivalents (sqlglot's postgres generator: ``RAND`` -> ``RANDOM``, ``MOD`` -> ``%``, ...) |
| any other geometry (POLYGON, INTERSECTS, AREA, DISTANCE in the select list, ...) | refused, naming the construct |

``coord`` is qualified like the POINT's columns (``f.coord``).  RA wrap follows boxSearch's
rule: a box crossing RA 0 is written ``boxSearch(coord, 350, 370, d1, d2)``.
"""

from __future__ import annotations

from sqlglot import exp

from gateway.adql.validate import AdqlQuery, position_of
from gateway.faults import UsageFault
from gateway.residual import column_of, cone_forms, cone_term, conjuncts, constant, disjuncts

GEOMETRY = {
    "POINT",
    "CIRCLE",
    "BOX",
    "POLYGON",
    "REGION",
    "CONTAINS",
    "INTERSECTS",
    "DISTANCE",
    "AREA",
    "CENTROID",
    "COORD1",
    "COORD2",
    "COORDSYS",
}


def _num(x: float, fmt: str = "r") -> exp.Expression:
    text = repr(float(x)) if fmt == "r" else f"{x:.12g}"
    lit = exp.Literal.number(text.lstrip("-"))
    return exp.Neg(this=lit) if text.startswith("-") else lit


def _call(name: str, *args) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _coord(point_arg: exp.Column) -> exp.Column:
    return exp.column("coord", table=point_arg.table or None)


UPLOAD = "tap_upload"
#: PostgreSQL types of VOTable datatypes, for the first row of an inlined upload
PG_TYPES = {
    "boolean": "BOOLEAN",
    "short": "SMALLINT",
    "int": "INT",
    "long": "BIGINT",
    "float": "REAL",
    "double": "DOUBLE PRECISION",
    "unsignedByte": "SMALLINT",
    "char": "TEXT",
    "unicodeChar": "TEXT",
}


def _tables(query: AdqlQuery, uploads: bool = True):
    """(alias, Table) of every table reference of the query (TAP_UPLOAD ones only if
    ``uploads``)."""
    for node in query.ast.find_all(exp.Table):
        if uploads or node.meta.get("gw_archive") != UPLOAD:
            yield node.alias_or_name, node.meta["gw_table"]


def _box_term(cond: exp.Expression, alias: str, table) -> tuple[exp.Column, tuple] | None:
    """``CONTAINS(POINT(ra, dec), BOX(a, d, w, h)) = 1`` on the table's position."""
    if not isinstance(cond, exp.EQ):
        return None
    f = cond.this if isinstance(cond.this, exp.Contains) else cond.expression
    other = cond.expression if f is cond.this else cond.this
    if not isinstance(f, exp.Contains):
        return None
    p, b = f.this, f.expression
    try:
        if constant(other) != 1 or not (isinstance(b, exp.Anonymous) and b.name.upper() == "BOX"):
            return None
    except (ValueError, TypeError):
        return None
    args = list(p.expressions)[-2:] if isinstance(p, exp.Anonymous) and p.name.upper() == "POINT" else []
    cols = [column_of(a, alias, table) for a in args]
    if len(cols) != 2 or None in cols or [c.name for c in cols] != [table.ra_column, table.dec_column]:
        return None
    a, d, w, h = (float(constant(x)) for x in b.expressions[-4:])
    return args[0], (a - w / 2, a + w / 2, d - h / 2, d + h / 2)


def _range_terms(conds, alias, table):
    """``ra BETWEEN a1 AND a2`` and ``dec BETWEEN d1 AND d2`` among the WHERE terms."""
    found = {}
    for c in conds:
        if isinstance(c, exp.Between):
            col = column_of(c.this, alias, table)
            if col is not None and col.name in (table.ra_column, table.dec_column):
                try:
                    found[col.name] = (c, c.this, float(constant(c.args["low"])), float(constant(c.args["high"])))
                except (ValueError, TypeError):
                    continue
    if table.ra_column in found and table.dec_column in found:
        return found[table.ra_column], found[table.dec_column]
    return None


def _centre_nodes(cond, alias, table):
    """The centre of a cone term as the user wrote it (literal text kept): the CIRCLE's first
    two numbers, or the other POINT of a DISTANCE."""
    for node in cond.find_all(exp.Anonymous):
        if node.name.upper() == "CIRCLE":
            a, d = node.expressions[-3:-1]
            return a.copy(), d.copy()
        if node.name.upper() == "POINT":
            args = list(node.expressions)[-2:]
            if all(column_of(x, alias, table) is None for x in args) and not any(
                True for x in args for _ in x.find_all(exp.Column)
            ):
                return args[0].copy(), args[1].copy()
    return None


def box_search(coord: exp.Column, ra1: float, ra2: float, dec1: float, dec2: float) -> exp.Expression:
    """``boxSearch`` with its RA-wrap rule (docs/upstreams.md §1.3): ra1 > ra2 or ra1 < 0 is written
    as ``ra1 .. ra2 + 360`` so the box crosses RA 0."""
    if ra1 < 0:
        ra1, ra2 = ra1 + 360, ra2 + 360
    elif ra2 < ra1:
        ra2 += 360
    return _call("boxSearch", coord, _num(ra1), _num(ra2), _num(dec1), _num(dec2))


def _spatial(cond: exp.Expression, tables) -> exp.Expression | None:
    """``coneSearch``/``boxSearch`` for a cone or box term on a table's position, or for an OR
    of such terms (the planner's multi-cone sub-queries); None for anything else."""
    terms = disjuncts(cond)
    if len(terms) > 1:
        parts = [_spatial(t, tables) for t in terms]
        if any(p is None for p in parts):
            return None
        out = parts[0]
        for p in parts[1:]:
            out = exp.Or(this=out, expression=p)
        return exp.Paren(this=out)
    for alias, table in [(a, t) for a, t in tables if t.positional]:
        cone = cone_term(cond, alias, table)
        if cone is not None:
            point = next(n for n in cond.find_all(exp.Column) if column_of(n, alias, table) is not None)
            ra, dec = _centre_nodes(cond, alias, table) or (_num(cone.ra), _num(cone.dec))
            return _call("coneSearch", _coord(point), ra, dec, _num(cone.radius * 3600, "g"))
        box = _box_term(cond, alias, table)
        if box is not None:
            return box_search(_coord(box[0]), *box[1])
        moving = _column_cone(cond, alias, table)
        if moving is not None:
            return moving
    return None


def _spatial_conds(cond: exp.Expression, tables) -> exp.Expression:
    """A WHERE or ON condition with its cone and box terms (AND-ed, or OR-ed) written as
    HSC's stored functions; ``ra BETWEEN .. AND dec BETWEEN ..`` pairs as one boxSearch."""
    new = []
    conds = list(conjuncts(cond))
    for alias, table in [(a, t) for a, t in tables if t.positional]:
        rng = _range_terms(conds, alias, table)
        if rng is not None:
            (ra_node, ra_col, a1, a2), (dec_node, _, d1, d2) = rng
            conds = [c for c in conds if c is not ra_node and c is not dec_node]
            new.append(box_search(_coord(ra_col), a1, a2, d1, d2))
    for c in conds:
        replaced = _spatial(c, tables)
        new.append(replaced if replaced is not None else c.copy())
    combined = new[0]
    for c in new[1:]:
        combined = exp.And(this=combined, expression=c)
    return combined


def _own_point(args: list, alias: str, table) -> exp.Column | None:
    """The ra column when ``args`` are ``alias.ra, alias.dec``, the table's position."""
    cols = [column_of(a, alias, table) if isinstance(a, exp.Column) and a.table else None for a in args]
    if len(cols) != 2 or None in cols or [c.name for c in cols if c] != [table.ra_column, table.dec_column]:
        return None
    return args[0]


def _free_of(nodes, alias: str) -> bool:
    return not any(c.table and c.table.lower() == alias.lower() for n in nodes for c in n.find_all(exp.Column))


def _column_cone(cond: exp.Expression, alias: str, table) -> exp.Expression | None:
    """``coneSearch(alias.coord, x, y, (r) * 3600)`` for a cone on the table's position whose
    centre or radius are expressions of other tables (a crossmatch, an upload's rows);
    the cone forms are those of :func:`gateway.residual.cone_forms`."""
    for mine, (x, y), r in cone_forms(cond):
        col = _own_point(mine, alias, table)
        if col is not None and _free_of([x, y, r], alias):
            radius = exp.Mul(this=exp.Paren(this=r.copy()), expression=_num(3600, "g"))
            return _call("coneSearch", _coord(col), x.copy(), y.copy(), radius)
    return None


def _pg_value(v, col, first: bool) -> exp.Expression:
    if v is None:
        node: exp.Expression = exp.Null()
    elif isinstance(v, bool):
        node = exp.true() if v else exp.false()
    elif isinstance(v, int):
        node = exp.Literal.number(str(v)) if v >= 0 else exp.Neg(this=exp.Literal.number(str(-v)))
    elif isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            node = exp.Cast(
                this=exp.Literal.string("NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")),
                to=exp.DataType.build("DOUBLE PRECISION"),
            )
        else:
            node = _num(v)
    else:
        node = exp.Literal.string(str(v))
    if first:
        node = exp.Cast(this=node, to=exp.DataType.build(PG_TYPES.get(col.datatype, "TEXT"), dialect="postgres"))
    return node


def _inline_uploads(tree: exp.Expression, query: AdqlQuery, max_rows: int | None) -> None:
    """Every ``TAP_UPLOAD`` table reference becomes a ``VALUES`` list with the upload's rows
    (HSC-SSP takes SQL only; there is no upload in its catalog-job API)."""
    for node in list(tree.find_all(exp.Table)):
        if node.meta.get("gw_archive") != UPLOAD:
            continue
        up = query.uploads[node.name.lower()]
        cols = up.table.columns
        if max_rows is not None and up.data.num_rows > max_rows:
            raise UsageFault(
                f"HSC-SSP takes at most {max_rows} rows of an uploaded table in one query here "
                f"(TAP_UPLOAD.{node.name} has {up.data.num_rows}); the gateway splits larger uploads "
                "when the query is a crossmatch"
            )
        for c in cols:
            if c.arraysize and c.datatype not in ("char", "unicodeChar"):
                raise UsageFault(
                    f"column {c.name} of TAP_UPLOAD.{node.name} is an array ({c.datatype}[{c.arraysize}]),"
                    " which HSC-SSP cannot be sent"
                )
        names = [exp.to_identifier(c.name, quoted=True) for c in cols]
        data = up.data.select([c.name for c in cols]) if all(c.name in up.data.column_names for c in cols) else up.data
        rows = data.to_pylist()
        if not rows:  # no rows: an empty relation of the right columns
            sel = exp.select(*[exp.alias_(_pg_value(None, c, True), c.name, quoted=True) for c in cols]).where(
                exp.false()
            )
            node.replace(exp.Subquery(this=sel, alias=exp.TableAlias(this=exp.to_identifier(node.alias_or_name))))
            continue
        tuples = [
            exp.Tuple(
                expressions=[
                    _pg_value(r[c.name] if c.name in r else list(r.values())[i], c, k == 0) for i, c in enumerate(cols)
                ]
            )
            for k, r in enumerate(rows)
        ]
        node.replace(
            exp.Values(
                expressions=tuples, alias=exp.TableAlias(this=exp.to_identifier(node.alias_or_name), columns=names)
            )
        )


def to_hsc_sql(
    query: AdqlQuery, schemas: dict[str, str], limit: int | None = None, upload_rows: int | None = None
) -> str:
    """HSC SQL text for a validated query.  ``schemas`` maps gateway schema names (lower-case)
    to HSC schemas; ``limit`` (MAXREC + 1) becomes the query's own LIMIT, lowered from its TOP
    if that is larger: on the ordered query itself, since SQL keeps no subquery's order in an
    outer query (and the ``-citus`` releases are distributed).  Raises UsageFault naming any
    construct HSC cannot evaluate."""
    tree = query.ast.copy()
    if limit is not None:
        top = tree.args.get("limit")
        current = int(top.expression.name) if top is not None and isinstance(top.expression, exp.Literal) else None
        if current is None or limit < current:
            tree.set("limit", exp.Limit(expression=exp.Literal.number(limit)))
    tables = list(_tables(query))
    hsc_tables = list(_tables(query, uploads=False))
    for sel in reversed(list(tree.find_all(exp.Select))):  # inner first: the outer terms are copied
        where = sel.args.get("where")
        if where is not None:
            where.set("this", _spatial_conds(where.this, hsc_tables))
        for j in sel.args.get("joins") or []:
            if j.args.get("on") is not None:
                j.set("on", _spatial_conds(j.args["on"], hsc_tables))
    _inline_uploads(tree, query, upload_rows)
    left = [
        n
        for n in tree.find_all(exp.Anonymous, exp.Contains)
        if ("CONTAINS" if isinstance(n, exp.Contains) else n.name.upper()) in GEOMETRY
    ]
    if left:  # name the innermost construct (the POLYGON rather than its CONTAINS)
        node = next(
            (n for n in left if not isinstance(n, exp.Contains) and n.name.upper() not in ("INTERSECTS", "POINT")),
            left[0],
        )
        name = "CONTAINS" if isinstance(node, exp.Contains) else node.name.upper()
        raise UsageFault(
            f"{name} is not available on HSC-SSP here: only cones (CONTAINS with CIRCLE, or "
            "DISTANCE(...) < r) and boxes (BOX, or ra/dec BETWEEN) on a table's position are "
            "translated",
            position=position_of(node),
        )
    for t in tree.find_all(exp.Table):
        db = t.args.get("db")
        if db is not None and db.name.lower() in schemas:
            t.set("db", exp.to_identifier(schemas[db.name.lower()]))
    _booleans(tree, tables)
    _tract_search(tree)
    _postgres_functions(tree)
    _fold_star(tree, tables)
    for e in tree.expressions:  # the validator's FIELD-name aliases where they change nothing
        if isinstance(e, exp.Alias) and isinstance(e.this, exp.Column) and e.alias.lower() == e.this.name.lower():
            e.replace(e.this)
    _plain_names(tree, tables)
    for o in tree.find_all(exp.Ordered):  # ADQL leaves NULL order open: PostgreSQL's default, unwritten
        o.set("nulls_first", bool(o.args.get("desc")))
    return tree.sql(dialect="postgres", normalize_functions=False)


def _postgres_functions(tree: exp.Select) -> None:
    """ADQL math functions whose PostgreSQL spelling or argument types differ (ADQL 2.1 §2.3)."""
    for node in list(tree.find_all(exp.Log)):
        base = node.args.get("expression")
        if base is not None:
            try:
                ten = constant(node.this) == 10
            except (ValueError, TypeError):
                ten = False
            if ten:  # LOG10(x) parses as Log(this=10, expression=x): PostgreSQL's log(x) is base 10
                node.replace(_call("LOG", base.copy()))
    for node in list(tree.find_all(exp.Round, exp.Trunc)):
        if node.args.get("decimals") is not None:  # round(double precision, int) does not exist
            node.set("this", exp.Cast(this=node.this.copy(), to=exp.DataType.build("DECIMAL")))


def _tract_search(tree: exp.Select) -> None:
    """ADQL ``1 = tractSearch(object_id, t[, t2])`` (a user-defined function, integer-valued
    as ADQL predicates are) -> HSC's boolean stored function ``tractSearch(...)``
    (docs/upstreams.md §1.3); ``= 0`` -> ``NOT``; elsewhere ``tractSearch(...)::integer``."""
    calls = [n for n in tree.find_all(exp.Anonymous) if n.name.lower() == "tractsearch"]
    for call in calls:
        if len(call.expressions) not in (2, 3):
            raise UsageFault(
                "tractSearch takes (object_id, tract) or (object_id, tract1, tract2)", position=position_of(call)
            )
        fn = exp.Anonymous(this="tractSearch", expressions=[a.copy() for a in call.expressions])
        parent = call.parent
        if isinstance(parent, (exp.EQ, exp.NEQ)):
            other = parent.expression if parent.this is call else parent.this
            try:
                value = constant(other)
            except (ValueError, TypeError):
                value = None
            if value in (0, 1):
                truth = (value == 1) == isinstance(parent, exp.EQ)
                parent.replace(fn if truth else exp.Not(this=fn))
                continue
        call.replace(exp.Cast(this=fn, to=exp.DataType.build("INT")))


def _booleans(tree: exp.Select, tables) -> None:
    """``isprimary = 1`` -> ``isprimary``, ``= 0`` (or ``<> 1``) -> ``NOT isprimary``: PostgreSQL
    has no boolean = integer operator, and ADQL users write booleans as 1/0 (ADQL 2.1 §2.3)."""
    for node in list(tree.find_all(exp.EQ, exp.NEQ)):
        for side, other in ((node.this, node.expression), (node.expression, node.this)):
            if not isinstance(side, exp.Column):
                continue
            col = next((c for c in (column_of(side, a, t) for a, t in tables) if c is not None), None)
            try:
                value = constant(other)
            except (ValueError, TypeError):
                continue
            if col is not None and col.datatype == "boolean" and value in (0, 1):
                truth = (value == 1) != isinstance(node, exp.NEQ)
                node.replace(side.copy() if truth else exp.Not(this=side.copy()))
                break


def _plain_names(tree: exp.Select, tables) -> None:
    """Write names as HSC users do: no quotes on lower-case regular identifiers, and no
    qualifier that only repeats the single table's own name."""
    import re

    bare = {t.name.lower() for a, t in tables if a.lower() == t.name.lower()}
    for col in tree.find_all(exp.Column):
        if len(tables) == 1 and col.table and col.table.lower() in bare and not col.args.get("db"):
            col.set("table", None)
    for ident in tree.find_all(exp.Identifier):
        if ident.quoted and re.fullmatch(r"[a-z_][a-z0-9_]*", ident.name) and ident.name not in PG_RESERVED:
            ident.set("quoted", False)


PG_RESERVED = {
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "default",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "into",
    "leading",
    "limit",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "primary",
    "references",
    "select",
    "some",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "when",
    "where",
    "window",
    "with",
}


def _fold_star(tree: exp.Select, tables) -> None:
    if len(tables) != 1:
        return
    _, table = tables[0]
    names = []
    for e in tree.expressions:
        inner = e.this if isinstance(e, exp.Alias) else e
        if not isinstance(inner, exp.Column) or (isinstance(e, exp.Alias) and e.alias != inner.name):
            return
        names.append(inner.name)
    if [n.lower() for n in names] == [c.name.lower() for c in table.columns]:
        tree.set("expressions", [exp.Star()])
