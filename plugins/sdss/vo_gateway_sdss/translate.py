"""ADQL -> SkyServer T-SQL (docs/upstreams.md §5), on the validated ADQL AST, written by
sqlglot's ``tsql`` dialect:

* ``schema.Table`` -> ``dbo.Table``; ``TOP`` stays, lowered to MAXREC + 1 when that is smaller.
* A cone on a table's own position, an AND-ed ``1 = CONTAINS(POINT(t.ra, t.dec), CIRCLE(ra, dec,
  r))`` with constant centre and radius, becomes a join with SkyServer's indexed cone
  function: ``JOIN dbo.fGetNearbyObjEq(ra, dec, r_arcmin) AS n0 ON n0.objID = t.objID``
  (``fGetNearbySpecObjEq`` and ``specObjID`` for spectra).
* A cone on ``Field`` or ``Frame`` (about 10^6 rows, no indexed cone function) and any other
  circle (an OR of cones, a crossmatch) becomes ``dbo.fDistanceArcMinEq(...) <= r``
  in arcmin, and ``DISTANCE(p, q)`` becomes ``dbo.fDistanceArcMinEq(...) / 60`` in degrees.
* ADQL's one-argument ``ROUND``, ``TRUNCATE`` and ``MOD`` take their T-SQL spellings.
* A box or convex polygon on a table's own position, an AND-ed ``1 = CONTAINS(POINT(t.ra,
  t.dec), BOX|POLYGON(...))`` with constant arguments, becomes an ra/dec range SkyServer's
  ra/dec index answers (the polygon's bounding range, its great-circle edges' bulge
  included) AND one plane test per edge on the unit vector of (ra, dec), which makes it
  exact: the gateway's BOX is the polygon with corners ``(ra ± w/2, dec ± h/2)`` and
  great-circle sides (ADQL 2.0 §2.4.4, :mod:`gateway.adql.geometry`).
* Refused, each with its name: every other geometry (a non-convex polygon, POINT outside
  these), and a query block whose SDSS tables have neither a cone, a box nor an id condition
  (SkyServer's tables hold 10^8 to 10^9 rows).
"""

from __future__ import annotations

import math
import re

import numpy as np
import sqlglot
from sqlglot import exp

from gateway.adql.validate import AdqlQuery, position_of
from gateway.engine import GEOMETRY as ADQL_GEOMETRY
from gateway.faults import UsageFault
from gateway.residual import cone_term, conjuncts, contains_of, disjuncts, polygon_term

SPECTRA = {"specobjall", "specobj"}
FIELDS = {"field", "frame"}  # ~10^6 rows and no indexed cone function: cones as fDistanceArcMinEq
REGULAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: T-SQL reserved words that could be ADQL column or alias names: these stay [quoted]
TSQL_RESERVED = {"ORDER", "GROUP", "KEY", "FILE", "PLAN", "USER", "TABLE", "INDEX", "PERCENT", "TOP", "FROM", "WHERE"}
GEOMETRY = ADQL_GEOMETRY | {"AREA", "CENTROID", "REGION"}


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _point(node) -> tuple[exp.Expression, exp.Expression] | None:
    if isinstance(node, exp.Anonymous) and node.name.upper() == "POINT" and len(node.expressions) == 3:
        return node.expressions[1], node.expressions[2]
    return None


def _circle(node) -> tuple[exp.Expression, exp.Expression, exp.Expression] | None:
    if isinstance(node, exp.Anonymous) and node.name.upper() == "CIRCLE" and len(node.expressions) == 4:
        return node.expressions[1], node.expressions[2], node.expressions[3]
    return None


def _cone(term, refs: dict) -> tuple[str, float, float, float] | None:
    """(alias, ra, dec, radius in degrees) of a cone on one of ``refs``' own positions with a
    constant centre and radius (:func:`gateway.residual.cone_term`: ``CONTAINS(POINT, CIRCLE)
    = 1`` or ``DISTANCE(...) < r``)."""
    for alias, node in refs.items():
        meta = node.meta.get("gw_table")
        cone = cone_term(term, alias, meta) if meta is not None and (len(refs) == 1 or _names(term, alias)) else None
        if cone is not None:
            return alias, cone.ra, cone.dec, cone.radius
    return None


def _vec(ra: float, dec: float) -> np.ndarray:
    a, d = math.radians(ra), math.radians(dec)
    return np.array([math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)])


def _polygon(term, refs: dict) -> tuple[str, list[tuple[float, float]]] | None:
    """(alias, vertices) of ``1 = CONTAINS(POINT(t.ra, t.dec), BOX|POLYGON(...))`` on one of
    ``refs``' own positions with constant arguments (:func:`gateway.residual.polygon_term`)."""
    for alias, node in refs.items():
        meta = node.meta.get("gw_table")
        verts = (
            polygon_term(term, alias, meta) if meta is not None and (len(refs) == 1 or _names(term, alias)) else None
        )
        if verts is not None:
            return alias, verts
    return None


def _polygon_sql(ref: str, verts: list[tuple[float, float]], position) -> str:
    """T-SQL for a point (``ref``.ra, ``ref``.dec) inside the convex spherical polygon
    ``verts``: its ra/dec bounding range (for SkyServer's index) AND one edge-plane test per
    side on the point's unit vector.  Raises UsageFault for a polygon that is not convex."""
    v = [_vec(a, d) for a, d in verts]
    centre = sum(v)
    centre = centre / np.linalg.norm(centre)
    planes = []
    for i in range(len(v)):
        n = np.cross(v[i], v[(i + 1) % len(v)])
        n = n if n @ centre > 0 else -n
        if any(n @ w < -1e-12 for w in v):
            raise UsageFault("a POLYGON that is not convex is not available on SkyServer here", position=position)
        planes.append(n / np.linalg.norm(n))
    t = np.linspace(0.0, 1.0, 257)
    edge = np.concatenate([[v[i] * (1 - s) + v[(i + 1) % len(v)] * s for s in t] for i in range(len(v))])
    edge /= np.linalg.norm(edge, axis=1)[:, None]
    dec = np.degrees(np.arcsin(np.clip(edge[:, 2], -1, 1)))
    ra = np.degrees(np.arctan2(edge[:, 1], edge[:, 0])) % 360.0
    pad = 1e-5
    d1, d2 = float(dec.min()) - pad, float(dec.max()) + pad
    spread = (ra - ra[0] + 180.0) % 360.0 - 180.0  # unwrapped about the first vertex
    r1, r2 = float(ra[0] + spread.min()) - pad, float(ra[0] + spread.max()) + pad
    if d2 >= 90.0 - pad or d1 <= -90.0 + pad or r2 - r1 >= 360.0:
        ra_sql = None  # a polygon around a pole: any RA
    elif r1 < 0.0:
        ra_sql = f"({ref}.ra >= {r1 + 360.0!r} OR {ref}.ra <= {r2!r})"
    elif r2 >= 360.0:
        ra_sql = f"({ref}.ra >= {r1!r} OR {ref}.ra <= {r2 - 360.0!r})"
    else:
        ra_sql = f"{ref}.ra BETWEEN {r1!r} AND {r2!r}"
    x = f"COS(RADIANS({ref}.dec)) * COS(RADIANS({ref}.ra))"
    y = f"COS(RADIANS({ref}.dec)) * SIN(RADIANS({ref}.ra))"
    z = f"SIN(RADIANS({ref}.dec))"
    tests = [f"{x} * {float(n[0])!r} + {y} * {float(n[1])!r} + {z} * {float(n[2])!r} >= 0" for n in planes]
    return " AND ".join([f"{ref}.dec BETWEEN {d1!r} AND {d2!r}"] + ([ra_sql] if ra_sql else []) + tests)


def _names(term, alias: str) -> bool:
    """Whether ``term`` names ``alias`` (with several tables, an unqualified column is ambiguous)."""
    return any(c.table.lower() == alias for c in term.find_all(exp.Column))


def _sdss_refs(sel: exp.Select, schema: str) -> dict[str, exp.Table]:
    """alias (lower-case) -> table node, for this SELECT's own SDSS tables."""
    out = {}
    for t in [sel.args.get("from_")] + list(sel.args.get("joins") or []):
        node = t.this if t is not None else None
        meta = node.meta.get("gw_table") if isinstance(node, exp.Table) else None
        if meta is not None and meta.schema.lower() == schema:
            out[(node.alias_or_name).lower()] = node
    return out


def _id_columns(table) -> set[str]:
    meta = table.meta.get("gw_table")
    if meta is None:
        return set()
    return {meta.id_column or ""} | {c for fk in meta.foreign_keys for c in fk.from_columns}


def _bounded_by_id(term, refs: dict) -> str | None:
    """The alias an ``id = constant`` or ``id IN (constants)`` condition bounds."""
    col = None
    if isinstance(term, exp.EQ):
        for a, b in ((term.this, term.expression), (term.expression, term.this)):
            if isinstance(a, exp.Column) and isinstance(b, exp.Literal | exp.Neg):
                col = a
    elif isinstance(term, exp.In) and isinstance(term.this, exp.Column) and not term.args.get("query"):
        col = term.this
    if col is None:
        return None
    alias = (col.table or (next(iter(refs)) if len(refs) == 1 else "")).lower()
    return alias if alias in refs and col.name.lower() in _id_columns(refs[alias]) else None


def to_skyserver_sql(query: AdqlQuery, schema: str, limit: int | None = None) -> str:
    """The T-SQL statement for a validated query over tables of ``schema`` (the ADQL schema,
    lower-case).  ``limit`` (MAXREC + 1) lowers the query's TOP.  Raises UsageFault."""
    tree = query.ast.copy()
    if not isinstance(tree, exp.Select):
        raise UsageFault("SkyServer is asked one SELECT at a time here; set operations run in the gateway")
    if limit is not None and (query.top is None or limit < query.top):
        tree.set("limit", exp.Limit(expression=exp.Literal.number(limit)))
    n = 0
    for sel in reversed(list(tree.find_all(exp.Select))):  # inner first
        refs = _sdss_refs(sel, schema)
        if not refs:
            continue
        bounded: set[str] = set()
        where = sel.args.get("where")
        kept = []
        for term in list(conjuncts(where.this)) if where is not None else []:
            cones = [_cone(d, refs) for d in disjuncts(term)]
            aliases = {c[0] for c in cones if c is not None}
            if cones and None not in cones and len(aliases) == 1 and not aliases & bounded:
                (alias,) = aliases
                table = refs[alias]
                if table.name.lower() in FIELDS:  # no indexed cone function: fDistanceArcMinEq
                    bounded.add(alias)
                    kept.append(term)
                    continue
                spectra = table.name.lower() in SPECTRA
                fn, key = ("fGetNearbySpecObjEq", "specObjID") if spectra else ("fGetNearbyObjEq", "objID")
                calls = [f"dbo.{fn}({ra!r}, {dec!r}, {r * 60!r})" for _, ra, dec, r in cones]  # type: ignore[misc]
                source = (
                    calls[0] if len(calls) == 1 else "(" + " UNION ".join(f"SELECT {key} FROM {c}" for c in calls) + ")"
                )
                join = sqlglot.parse_one(
                    f"SELECT 1 FROM x JOIN {source} AS n{n} ON n{n}.{key} = {table.alias_or_name}.{key}", read="tsql"
                ).args["joins"][0]
                sel.append("joins", join)
                n += 1
                bounded.add(alias)
                continue
            poly = _polygon(term, refs)
            if poly is not None:
                alias, verts = poly
                c = contains_of(term)
                sql = _polygon_sql(refs[alias].alias_or_name, verts, position_of(c.expression) if c else None)
                kept.append(exp.Paren(this=sqlglot.parse_one(sql, read="tsql")))
                bounded.add(alias)
                continue
            by_id = _bounded_by_id(term, refs)
            if by_id:
                bounded.add(by_id)
            kept.append(term)
        if where is not None:
            sel.set("where", exp.Where(this=exp.and_(*kept)) if kept else None)
        links = [t for t in kept if isinstance(t, exp.EQ)]
        for join in sel.args.get("joins") or []:
            on = join.args.get("on")
            for term in list(conjuncts(on)) if on is not None else []:
                by_id = _bounded_by_id(term, refs)
                if by_id:
                    bounded.add(by_id)
                elif isinstance(term, exp.EQ):
                    links.append(term)
        grew = True
        while grew:  # a table joined on one of its ids to a bounded table is bounded too
            grew = False
            for term in links:
                a, b = term.this, term.expression
                if not (isinstance(a, exp.Column) and isinstance(b, exp.Column)):
                    continue
                for x, y in ((a, b), (b, a)):
                    ax, ay = x.table.lower(), y.table.lower()
                    if ax in refs and ax not in bounded and (ay in bounded or ay not in refs):
                        if x.name.lower() in _id_columns(refs[ax]):
                            bounded.add(ax)
                            grew = True
        unbounded = [alias for alias in refs if alias not in bounded]
        if unbounded:
            t = refs[unbounded[0]]
            meta = t.meta.get("gw_table")
            idc = meta.id_column if meta is not None else "objid"
            raise UsageFault(
                f"{schema}.{meta.name if meta is not None else t.name} is too large to scan: add a position, e.g. "
                "WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', ra, dec, r)) (or a BOX), or an id constraint "
                f"such as {idc} = ...",
                position=position_of(t),
            )
    _geometry(tree)
    _functions(tree)
    for t in tree.find_all(exp.Table):
        meta = t.meta.get("gw_table")
        if meta is not None and meta.schema.lower() == schema:
            t.set("db", exp.to_identifier("dbo"))
            t.set("this", exp.to_identifier(meta.name))
    for e in tree.expressions:  # the validator's FIELD-name aliases where they change nothing
        if isinstance(e, exp.Alias) and isinstance(e.this, exp.Column) and e.alias.lower() == e.this.name.lower():
            e.replace(e.this)
    for ident in tree.find_all(exp.Identifier):  # SkyServer's own spelling: plain names unquoted
        if REGULAR.fullmatch(ident.name) and ident.name.upper() not in TSQL_RESERVED:
            ident.set("quoted", False)
    return tree.sql(dialect="tsql", normalize_functions=False)


def _geometry(tree: exp.Expression) -> None:
    for eq in list(tree.find_all(exp.EQ)):
        c = contains_of(eq)
        if c is None:
            continue
        point, circle = _point(c.this), _circle(c.expression)
        if point is None or circle is None:
            shape = c.expression if isinstance(c.expression, exp.Anonymous) else c
            name = shape.name.upper() if isinstance(shape, exp.Anonymous) else "CONTAINS"
            raise UsageFault(
                f"{name} is not available on SkyServer here: only cones (CONTAINS with CIRCLE) and DISTANCE "
                "are translated",
                position=position_of(shape),
            )
        arcmin = exp.Mul(this=exp.Paren(this=circle[2].copy()), expression=exp.Literal.number(60))
        eq.replace(
            exp.LTE(this=_fn("dbo.fDistanceArcMinEq", point[0], point[1], circle[0], circle[1]), expression=arcmin)
        )
    for node in list(tree.find_all(exp.Anonymous)):
        if node.name.upper() == "DISTANCE" and len(node.expressions) == 2:
            p, q = _point(node.expressions[0]), _point(node.expressions[1])
            if p is None or q is None:
                raise UsageFault("DISTANCE takes two POINTs here", position=position_of(node))
            node.replace(
                exp.Paren(this=exp.Div(this=_fn("dbo.fDistanceArcMinEq", *p, *q), expression=exp.Literal.number(60.0)))
            )
    for node in tree.find_all(exp.Anonymous, exp.Contains):
        name = "CONTAINS" if isinstance(node, exp.Contains) else node.name.upper()
        if name in GEOMETRY:
            raise UsageFault(
                f"{name} is not available on SkyServer here: only cones (CONTAINS with CIRCLE) and DISTANCE "
                "are translated",
                position=position_of(node),
            )


def _functions(tree: exp.Expression) -> None:
    """ADQL 2.1 §2.3 math functions whose T-SQL spelling differs."""
    for node in list(tree.find_all(exp.Round)):
        if node.args.get("decimals") is None:
            node.set("decimals", exp.Literal.number(0))
    for node in list(tree.find_all(exp.Anonymous)):
        name = node.name.upper()
        if name == "TRUNCATE":
            digits = node.expressions[1] if len(node.expressions) > 1 else exp.Literal.number(0)
            node.replace(exp.Anonymous(this="ROUND", expressions=[node.expressions[0], digits, exp.Literal.number(1)]))
        elif name == "MOD" and len(node.expressions) == 2:
            node.replace(exp.Mod(this=node.expressions[0], expression=node.expressions[1]))
