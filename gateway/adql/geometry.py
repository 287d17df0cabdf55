"""ADQL geometry (ADQL 2.1 §2.4) translated into plain SQL expressions on ICRS degrees.

Used by every SQL engine the gateway drives itself (DuckDB for the embedded archive and
TAP_SCHEMA).  Semantics:

* ``DISTANCE(POINT(a,b), POINT(c,d))`` and ``DISTANCE(a,b,c,d)``: great-circle distance in
  degrees (haversine form, exact for small angles).
* ``CONTAINS(POINT, CIRCLE)``: distance ≤ radius, with a ``dec BETWEEN`` pre-filter so a
  dec-sorted table is pruned by the engine's zone maps; ``= 0`` negates.
* ``CONTAINS(POINT, POLYGON|BOX)``: the polygon (≤ a hemisphere, constant vertices) is split
  into convex pieces by ear clipping in the gnomonic projection about its centroid (great
  circles map to straight lines there, so this is exact); a point is inside a convex spherical
  polygon iff it lies on the inner side of every edge plane.
* ``BOX(ra, dec, w, h)``: the polygon with corners ``(ra±w/2, dec±h/2)`` (ADQL 2.0 §2.4.4; BOX
  is deprecated in 2.1).
* ``INTERSECTS``: point/shape as CONTAINS; circle/circle by centre distance ≤ r1 + r2.
* ``AREA`` (square degrees: ``2π(1 − cos r)`` for a circle, the spherical excess of a BOX or
  POLYGON) and ``CENTROID`` (a circle's centre; a polygon's area-weighted centre) as values.
* ``POINT``/``CIRCLE``/``POLYGON`` in the select list: DALI arrays (``double[2]`` point,
  ``double[3]`` circle, ``double[*]`` polygon).  ``COORD1``/``COORD2`` extract coordinates.
The coordinate-system argument, if present, must be a string literal; only ICRS (or empty) is
accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
from sqlglot import exp

from ..faults import UsageFault
from ..sky import convex_pieces, polygon_area, polygon_centroid
from .validate import position_of

FRAMES = {"", "ICRS", "ICRS GEOCENTER", "ICRS BARYCENTER", "UNKNOWNFRAME"}


@dataclass
class Point:
    x: exp.Expression
    y: exp.Expression


@dataclass
class Circle:
    c: Point
    r: exp.Expression


@dataclass
class Polygon:
    verts: list[tuple[float, float]]


def _f(v: float) -> exp.Expression:
    return exp.Literal.number(repr(float(v)))


def _const(e: exp.Expression) -> float | None:
    if isinstance(e, exp.Paren):
        return _const(e.this)
    if isinstance(e, exp.Literal) and not e.is_string:
        return float(e.name)
    if isinstance(e, exp.Neg):
        v = _const(e.this)
        return None if v is None else -v
    return None


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _paren(e):
    return exp.Paren(this=e)


def haversine(p1: Point, p2: Point) -> exp.Expression:
    """Great-circle distance in degrees between two points given in degrees."""

    def hav(d):
        return exp.Pow(this=_fn("sin", exp.Div(this=_fn("radians", _paren(d)), expression=_f(2))), expression=_f(2))

    dy = exp.Sub(this=p2.y, expression=p1.y)
    dx = exp.Sub(this=p2.x, expression=p1.x)
    inner = exp.Add(
        this=hav(dy),
        expression=exp.Mul(
            this=exp.Mul(this=_fn("cos", _fn("radians", p1.y)), expression=_fn("cos", _fn("radians", p2.y))),
            expression=hav(dx),
        ),
    )
    return _fn("degrees", exp.Mul(this=_f(2), expression=_fn("asin", _fn("least", _f(1), _fn("sqrt", inner)))))


def in_convex(p: Point, piece: list[np.ndarray]) -> exp.Expression:
    ux = exp.Mul(this=_fn("cos", _fn("radians", p.y)), expression=_fn("cos", _fn("radians", p.x)))
    uy = exp.Mul(this=_fn("cos", _fn("radians", p.y)), expression=_fn("sin", _fn("radians", p.x)))
    uz = _fn("sin", _fn("radians", p.y))
    conds = []
    for i in range(len(piece)):
        n = np.cross(piece[i], piece[(i + 1) % len(piece)])
        s = exp.Add(
            this=exp.Add(this=exp.Mul(this=_f(n[0]), expression=ux), expression=exp.Mul(this=_f(n[1]), expression=uy)),
            expression=exp.Mul(this=_f(n[2]), expression=uz),
        )
        conds.append(exp.GTE(this=s, expression=_f(-1e-15)))
    return cast(exp.Expression, exp.and_(*conds))


class GeometryTranslator:
    """Rewrites geometry functions of a validated AST in place into SQL expressions."""

    def geom(self, node: exp.Expression):
        """Interpret ``node`` as a geometry value."""
        if isinstance(node, exp.Paren):
            return self.geom(node.this)
        if not isinstance(node, exp.Anonymous):
            raise UsageFault(
                f"expected a geometry (POINT, CIRCLE, BOX or POLYGON), got {node.sql()}", position=position_of(node)
            )
        name = node.name.upper()
        args = list(node.expressions)
        if args and isinstance(args[0], exp.Literal) and args[0].is_string:
            frame = args[0].name.strip().upper()
            if frame not in FRAMES:
                raise UsageFault(
                    f"coordinate system {args[0].name!r} is not supported; use ICRS", position=position_of(node)
                )
            args = args[1:]
        if name == "POINT":
            if len(args) != 2:
                raise UsageFault("POINT takes (ra, dec)", position=position_of(node))
            return Point(args[0], args[1])
        if name == "CENTROID":  # ADQL 2.1 §4.2.2: the centre of a circle, a polygon's area-weighted centre
            g = self.geom(args[0]) if len(args) == 1 else None
            if isinstance(g, Circle):
                return g.c
            if isinstance(g, Polygon):
                ra, dec = polygon_centroid(g.verts)
                return Point(_f(ra), _f(dec))
            raise UsageFault("CENTROID takes one CIRCLE, BOX or POLYGON", position=position_of(node))
        if name == "CIRCLE":
            if len(args) == 2:
                return Circle(self.geom(args[0]), args[1])
            if len(args) != 3:
                raise UsageFault("CIRCLE takes (ra, dec, radius) or (POINT, radius)", position=position_of(node))
            r = _const(args[2])
            if r is not None and not (0 < r <= 180):
                raise UsageFault(f"CIRCLE radius must be in (0, 180] degrees, got {r}", position=position_of(node))
            return Circle(Point(args[0], args[1]), args[2])
        if name == "BOX":
            vals = [_const(a) for a in args]
            if len(vals) != 4 or None in vals:
                raise UsageFault(
                    "BOX takes four numeric constants (ra, dec, width, height)", position=position_of(node)
                )
            a, d, w, h = (float(v) for v in vals if v is not None)
            return Polygon(
                [(a - w / 2, d - h / 2), (a + w / 2, d - h / 2), (a + w / 2, d + h / 2), (a - w / 2, d + h / 2)]
            )
        if name == "POLYGON":
            flat: list[float | None] = []
            for a in args:
                if isinstance(a, exp.Anonymous) and a.name.upper() == "POINT":
                    p = self.geom(a)
                    flat += [_const(p.x), _const(p.y)]
                else:
                    flat.append(_const(a))
            if None in flat or len(flat) < 6 or len(flat) % 2:
                raise UsageFault(
                    "POLYGON takes at least three vertices given as numeric constants", position=position_of(node)
                )
            xy = [float(v) for v in flat if v is not None]
            return Polygon([(xy[i], xy[i + 1]) for i in range(0, len(xy), 2)])
        raise UsageFault(f"{name} does not return a geometry", position=position_of(node))

    def predicate(self, node: exp.Anonymous | exp.Contains) -> exp.Expression:
        """Boolean SQL for CONTAINS/INTERSECTS."""
        if isinstance(node, exp.Contains):
            a, b, name = node.this, node.expression, "CONTAINS"
        else:
            name = node.name.upper()
            if len(node.expressions) != 2:
                raise UsageFault(f"{name} takes two geometries", position=position_of(node))
            a, b = node.expressions
        ga, gb = self.geom(a), self.geom(b)
        if name == "INTERSECTS" and isinstance(gb, Point) and not isinstance(ga, Point):
            ga, gb = gb, ga
        if isinstance(ga, Point):
            if isinstance(gb, Circle):
                return self.cone(ga, gb)
            if isinstance(gb, Polygon):
                return cast(
                    exp.Expression, exp.or_(*[_paren(in_convex(ga, piece)) for piece in convex_pieces(gb.verts)])
                )
            if isinstance(gb, Point):
                return exp.EQ(this=haversine(ga, gb), expression=_f(0))
        if isinstance(ga, Circle) and isinstance(gb, Circle):
            d = haversine(ga.c, gb.c)
            if name == "INTERSECTS":
                return exp.LTE(this=d, expression=exp.Add(this=ga.r, expression=gb.r))
            return exp.LTE(this=exp.Add(this=d, expression=ga.r), expression=gb.r)
        raise UsageFault(
            f"{name} of {type(ga).__name__.upper()} and {type(gb).__name__.upper()} is not supported",
            position=position_of(node),
        )

    def cone(self, p: Point, c: Circle) -> exp.Expression:
        dist = exp.LTE(this=haversine(p, c.c), expression=c.r)
        cy, cr = _const(c.c.y), _const(c.r)
        if cy is not None and cr is not None:
            pre = exp.Between(this=p.y, low=_f(cy - cr), high=_f(cy + cr))
        else:
            pre = exp.Between(
                this=p.y, low=exp.Sub(this=c.c.y, expression=c.r), high=exp.Add(this=c.c.y, expression=c.r)
            )
        return cast(exp.Expression, exp.and_(pre, dist))

    def value(self, node: exp.Anonymous) -> exp.Expression:
        """A geometry or DISTANCE/COORDn used as a value."""
        name = node.name.upper()
        if name == "DISTANCE":
            args = node.expressions
            if len(args) == 4:
                return haversine(Point(args[0], args[1]), Point(args[2], args[3]))
            if len(args) == 2:
                pa_, pb = self.geom(args[0]), self.geom(args[1])
                if isinstance(pa_, Point) and isinstance(pb, Point):
                    return haversine(pa_, pb)
            raise UsageFault("DISTANCE takes two POINTs or four numbers", position=position_of(node))
        if name in ("COORD1", "COORD2"):
            p = self.geom(node.expressions[0]) if node.expressions else None
            if not isinstance(p, Point):
                raise UsageFault(f"{name} takes a POINT", position=position_of(node))
            # ADQL 2.1 §4.2.6-7: a POINT's coordinates are double, whatever its literals' type
            return exp.Cast(this=_paren(p.x if name == "COORD1" else p.y), to=exp.DataType.build("DOUBLE"))
        if name in ("AREA", "CENTROID"):
            g = self.geom(node.expressions[0]) if len(node.expressions) == 1 else None
            if isinstance(g, Point) or g is None:
                raise UsageFault(f"{name} takes one CIRCLE, BOX or POLYGON", position=position_of(node))
            if name == "AREA":  # ADQL 2.1 §4.2.1: square degrees on the unit sphere
                if isinstance(g, Circle):
                    r = exp.Anonymous(this="RADIANS", expressions=[_paren(g.r)])
                    return exp.Mul(
                        this=_f(2 * math.pi * (180 / math.pi) ** 2),
                        expression=_paren(exp.Sub(this=_f(1.0), expression=exp.Anonymous(this="COS", expressions=[r]))),
                    )
                return _f(polygon_area(g.verts))
            if isinstance(g, Circle):  # ADQL 2.1 §4.2.2: a POINT
                return exp.Array(expressions=[exp.Cast(this=g.c.x, to=exp.DataType.build("DOUBLE")), g.c.y])
            p = self.geom(node)
            return exp.Array(expressions=[exp.Cast(this=p.x, to=exp.DataType.build("DOUBLE")), p.y])
        if name in ("CONTAINS", "INTERSECTS"):
            return exp.Cast(this=_paren(self.predicate(node)), to=exp.DataType.build("INT"))
        g = self.geom(node)
        if isinstance(g, Point):
            return exp.Array(expressions=[exp.Cast(this=g.x, to=exp.DataType.build("DOUBLE")), g.y])
        if isinstance(g, Circle):
            return exp.Array(expressions=[exp.Cast(this=g.c.x, to=exp.DataType.build("DOUBLE")), g.c.y, g.r])
        # double[*] (DALI 1.1 §3.3.7 polygon: longitudes in [0, 360)), not the literals' DECIMAL
        flat = [_f(v) for ra, dec in g.verts for v in (ra % 360.0, dec)]
        return exp.Array(expressions=[exp.Cast(this=flat[0], to=exp.DataType.build("DOUBLE"))] + flat[1:])

    def rewrite(self, tree: exp.Expression) -> exp.Expression:
        """Rewrite ``tree`` (changed in place: pass a copy) into engine SQL predicates and values."""

        def comparison(node: exp.Expression):
            # CONTAINS(...) = 1 / 1 = CONTAINS(...) / ... = 0 -> boolean predicate
            if isinstance(node, (exp.EQ, exp.NEQ)):
                for g, v in ((node.this, node.expression), (node.expression, node.this)):
                    if _is_pred(g) and _const(v) in (0.0, 1.0):
                        pred = _paren(self.predicate(g))
                        positive = (_const(v) == 1.0) == isinstance(node, exp.EQ)
                        return pred if positive else exp.Not(this=pred)
            # DISTANCE(...) < r with a constant point: add the dec pre-filter
            if isinstance(node, (exp.LT, exp.LTE, exp.GT, exp.GTE)):
                d, r = (
                    (node.this, node.expression)
                    if isinstance(node, (exp.LT, exp.LTE))
                    else (node.expression, node.this)
                )
                if isinstance(d, exp.Anonymous) and d.name.upper() == "DISTANCE" and _const(r) is not None:
                    pts = self._distance_points(d)
                    if pts:
                        col, const = pts
                        cy, cr = _const(const.y), _const(r)
                        assert cy is not None and cr is not None  # checked: constants
                        pre = exp.Between(this=col.y, low=_f(cy - cr), high=_f(cy + cr))
                        return exp.and_(
                            pre,
                            node.__class__(
                                this=self.value(d) if d is node.this else node.this,
                                expression=self.value(d) if d is node.expression else node.expression,
                            ),
                        )
            return node

        tree = tree.transform(comparison, copy=False)  # callers pass their own copy

        def values(node: exp.Expression):
            if isinstance(node, exp.Contains):
                return exp.Cast(this=_paren(self.predicate(node)), to=exp.DataType.build("INT"))
            if isinstance(node, exp.Anonymous) and node.name.upper() in (
                "POINT",
                "CIRCLE",
                "BOX",
                "POLYGON",
                "DISTANCE",
                "COORD1",
                "COORD2",
                "CONTAINS",
                "INTERSECTS",
                "AREA",
                "CENTROID",
            ):
                return self.value(node)
            return node

        return tree.transform(values, copy=False)

    def _distance_points(self, d: exp.Anonymous):
        args = d.expressions
        if len(args) == 4:
            p1, p2 = Point(args[0], args[1]), Point(args[2], args[3])
        elif len(args) == 2:
            try:
                p1, p2 = self.geom(args[0]), self.geom(args[1])
            except UsageFault:
                return None
            if not (isinstance(p1, Point) and isinstance(p2, Point)):
                return None
        else:
            return None
        for a, b in ((p1, p2), (p2, p1)):
            if _const(b.x) is not None and _const(b.y) is not None and isinstance(a.y, exp.Column):
                return a, b
        return None


def _is_pred(node):
    return isinstance(node, exp.Contains) or (
        isinstance(node, exp.Anonymous) and node.name.upper() in ("CONTAINS", "INTERSECTS")
    )
