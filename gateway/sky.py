"""Sky geometry on the unit sphere, in ICRS degrees, with numpy: great-circle distances,
cones, convex spherical polygons, their areas and centroids, and the SIA 2.0/SODA shapes
(``("circle", ra, dec, r)``, ``("range", ra1, ra2, dec1, dec2)``, ``("polygon", ra1, dec1,
...)``, as :func:`gateway.dali.parse_shape` gives them) against image footprints.

The one home of these computations: the embedded engine's cone index, the ADQL geometry
translation (:mod:`gateway.adql.geometry`), SIA/SODA matching and the image archives use it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .faults import UsageFault

if TYPE_CHECKING:
    from .archive import Cone


# -- spherical helpers -----------------------------------------------------------------------
def unit(ra, dec):
    """Unit vectors (shape (..., 3)) of positions in degrees."""
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def separation(ra1, dec1, ra2, dec2):
    """Great-circle distance in degrees (haversine)."""
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.minimum(1, np.sqrt(h))))


def polygon_contains(verts: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Points (unit vectors, shape (n,3)) inside a convex spherical polygon (unit vectors,
    any orientation)."""
    c = verts.sum(axis=0)
    sign = 1.0 if np.dot(np.cross(verts[0], verts[1]), c) >= 0 else -1.0
    inside = np.ones(len(pts), bool)
    for i in range(len(verts)):
        n = sign * np.cross(verts[i], verts[(i + 1) % len(verts)])
        inside &= pts @ n >= -1e-12
    return inside


def shape_overlaps_polygon(shape: tuple, poly_radec: list[tuple[float, float]]) -> bool:
    """Does a SIA2/SODA ``shape`` intersect a (convex, small) footprint polygon?  Exact for
    circles against convex polygons; ranges and polygons are sampled along their edges
    (0.01-degree steps) plus vertex containment both ways."""
    verts = unit(np.array([p[0] for p in poly_radec]), np.array([p[1] for p in poly_radec]))
    kind = shape[0]
    if kind == "circle":
        ra, dec, r = shape[1:]
        p = unit(np.array([ra]), np.array([dec]))
        if polygon_contains(verts, p)[0]:
            return True
        for i in range(len(verts)):  # distance from centre to each edge arc
            a, b = verts[i], verts[(i + 1) % len(verts)]
            n = np.cross(a, b)
            n /= np.linalg.norm(n)
            d = math.degrees(math.asin(min(1.0, abs(float(p[0] @ n)))))
            proj = p[0] - (p[0] @ n) * n
            if np.linalg.norm(proj) > 0:
                proj /= np.linalg.norm(proj)
                on_arc = np.dot(np.cross(a, proj), n) >= 0 and np.dot(np.cross(proj, b), n) >= 0
                if on_arc and d <= r:
                    return True
            if min(separation(ra, dec, *poly_radec[i]), 180) <= r:
                return True
        return False
    outline = shape_outline(shape)
    pts = unit(outline[:, 0], outline[:, 1])
    if polygon_contains(verts, pts).any():
        return True
    other = unit(np.array([v[0] for v in shape_vertices(shape)]), np.array([v[1] for v in shape_vertices(shape)]))
    return bool(polygon_contains(other, verts).any())


def box_corners(ra: float, dec: float, width: float, height: float) -> list[float]:
    """The corners of a ``width`` x ``height`` degree box centred on (ra, dec), as a flat DALI
    polygon ``[ra1, dec1, ...]`` (SW, SE, NE, NW; RA in [0, 360)): the width is measured on the
    sky, so the RA half-width is ``width / 2 / cos(dec)`` (cos clamped at 1e-6 at the poles).
    SIA 1.0 ``POS``/``SIZE`` regions (SIA 1.0 §4.1) and image footprints from a centre and size."""
    half = width / 2 / max(math.cos(math.radians(dec)), 1e-6)
    lo, hi = dec - height / 2, dec + height / 2
    return [(ra - half) % 360.0, lo, (ra + half) % 360.0, lo, (ra + half) % 360.0, hi, (ra - half) % 360.0, hi]


def shape_vertices(shape: tuple) -> list[tuple[float, float]]:
    if shape[0] == "range":
        ra1, ra2, d1, d2 = shape[1:]
        ra1, ra2 = max(ra1, 0.0) if math.isfinite(ra1) else 0.0, min(ra2, 360.0) if math.isfinite(ra2) else 360.0
        d1, d2 = max(d1, -90.0), min(d2, 90.0)
        return [(ra1, d1), (ra2, d1), (ra2, d2), (ra1, d2)]
    if shape[0] == "polygon":
        v = shape[1:]
        return [(v[i], v[i + 1]) for i in range(0, len(v), 2)]
    raise ValueError(shape[0])


def shape_outline(shape: tuple, step: float = 0.01) -> np.ndarray:
    vs = shape_vertices(shape)
    out = []
    for i in range(len(vs)):
        (a1, d1), (a2, d2) = vs[i], vs[(i + 1) % len(vs)]
        n = max(2, int(max(abs(a2 - a1), abs(d2 - d1)) / step))
        t = np.linspace(0, 1, n, endpoint=False)
        out.append(np.stack([a1 + (a2 - a1) * t, d1 + (d2 - d1) * t], axis=1))
    return np.concatenate(out)


def shape_box(shape: tuple) -> tuple[float, float, float, float]:
    """(ra, dec, width, height) in degrees of the RA/Dec box around a CIRCLE, RANGE or POLYGON
    (width measured on the sky at the box's central declination), as services that take a
    centre and a size (SkyMapper SIAP, HSC DAS cutout) want it."""
    if shape[0] == "circle":
        _, ra, dec, r = shape
        return ra, dec, 2 * r, 2 * r
    if shape[0] == "range":
        _, ra1, ra2, dec1, dec2 = shape
        dec = (dec1 + dec2) / 2
        return (ra1 + ra2) / 2, dec, (ra2 - ra1) * math.cos(math.radians(dec)), dec2 - dec1
    ras, decs = shape[1::2], shape[2::2]
    dec = (min(decs) + max(decs)) / 2
    return (min(ras) + max(ras)) / 2, dec, (max(ras) - min(ras)) * math.cos(math.radians(dec)), max(decs) - min(decs)


def _fan(verts):
    """(signed spherical excess, unit vector sum) of each triangle of the fan from vertex 0
    (Van Oosterom & Strackee 1983: tan(E/2) = a.(b x c) / (1 + a.b + b.c + c.a))."""
    v = unit(*np.array(verts, dtype=float).T)
    out = []
    for b, c in zip(v[1:-1], v[2:]):
        a = v[0]
        num = float(np.dot(a, np.cross(b, c)))
        den = 1 + float(np.dot(a, b) + np.dot(b, c) + np.dot(c, a))
        out.append((2 * math.atan2(num, den), a + b + c))
    return out


def polygon_area(verts: list[tuple[float, float]]) -> float:
    """Area in square degrees of a spherical polygon with great-circle edges (at most a
    hemisphere), whatever the vertices' orientation."""
    return abs(sum(e for e, _ in _fan(verts))) * (180 / math.pi) ** 2


def polygon_centroid(verts: list[tuple[float, float]]) -> tuple[float, float]:
    """(ra, dec) in degrees of a spherical polygon's centroid: the area-weighted sum of its fan
    triangles' centre directions, normalised."""
    total = sum(e * s / np.linalg.norm(s) for e, s in _fan(verts))
    x, y, z = total / np.linalg.norm(total)
    return math.degrees(math.atan2(y, x)) % 360, math.degrees(math.asin(max(-1.0, min(1.0, z))))


def convex_pieces(verts: list[tuple[float, float]]) -> list[list[np.ndarray]]:
    """Split a simple spherical polygon into convex pieces (lists of unit vectors, CCW seen
    from outside the sphere, i.e. interior on the left)."""
    vs = [unit(*v) for v in verts]
    c = np.sum(vs, axis=0)
    if np.linalg.norm(c) < 1e-12:
        raise UsageFault("POLYGON is too large (must fit in a hemisphere)")
    c /= np.linalg.norm(c)
    if any(np.dot(v, c) <= 1e-12 for v in vs):
        raise UsageFault("POLYGON is too large (must fit in a hemisphere)")
    # gnomonic projection about c
    e1 = np.cross([0, 0, 1], c)
    if np.linalg.norm(e1) < 1e-9:
        e1 = np.array([1.0, 0, 0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(c, e1)
    pts = [(np.dot(v, e1) / np.dot(v, c), np.dot(v, e2) / np.dot(v, c)) for v in vs]
    area = sum(pts[i][0] * pts[(i + 1) % len(pts)][1] - pts[(i + 1) % len(pts)][0] * pts[i][1] for i in range(len(pts)))
    idx = list(range(len(pts)))
    if area < 0:
        idx.reverse()
    if abs(area) < 1e-18:
        raise UsageFault("POLYGON is degenerate (zero area)")

    def cross(o, a, b):
        return (pts[a][0] - pts[o][0]) * (pts[b][1] - pts[o][1]) - (pts[a][1] - pts[o][1]) * (pts[b][0] - pts[o][0])

    if all(cross(idx[i], idx[(i + 1) % len(idx)], idx[(i + 2) % len(idx)]) >= 0 for i in range(len(idx))):
        return [[vs[i] for i in idx]]
    tris = []
    ring = idx[:]
    guard = 0
    while len(ring) > 3 and guard < 10000:
        guard += 1
        n = len(ring)
        for i in range(n):
            a, b, cc = ring[i - 1], ring[i], ring[(i + 1) % n]
            if cross(a, b, cc) <= 0:
                continue
            if any(
                p not in (a, b, cc) and cross(a, b, p) >= 0 and cross(b, cc, p) >= 0 and cross(cc, a, p) >= 0
                for p in ring
            ):
                continue
            tris.append([vs[a], vs[b], vs[cc]])
            ring.pop(i)
            break
        else:
            raise UsageFault("POLYGON edges cross each other")
    tris.append([vs[i] for i in ring])
    return tris


def ra_band(cone: Cone) -> tuple[float, float] | None:
    """The exact RA interval of a circle, ``ra ± asin(sin r / cos dec)``; None when the
    circle reaches within 1 degree of a pole or crosses RA 0 (no RA filter then)."""
    if abs(cone.dec) + cone.radius >= 89.0:
        return None
    half = math.degrees(math.asin(min(1.0, math.sin(math.radians(cone.radius)) / math.cos(math.radians(cone.dec)))))
    if cone.ra - half < 0 or cone.ra + half > 360:
        return None
    return cone.ra - half, cone.ra + half


def cone_rows(ra: np.ndarray, dec: np.ndarray, cone: Cone) -> np.ndarray:
    """Indices (ascending) of the positions within ``cone``, for ``dec`` sorted ascending
    (NaN last): a binary search for the declination band, the exact RA band of the circle,
    then the same haversine test as the SQL of :func:`gateway.adql.geometry.haversine`."""
    lo = int(np.searchsorted(dec, cone.dec - cone.radius, side="left"))
    hi = int(np.searchsorted(dec, cone.dec + cone.radius, side="right"))
    idx = np.arange(lo, hi)
    r, d = ra[lo:hi], dec[lo:hi]
    band = ra_band(cone)
    if band is not None:
        keep = (r >= band[0]) & (r <= band[1])
        idx, r, d = idx[keep], r[keep], d[keep]
    h = (
        np.sin(np.radians(cone.dec - d) / 2.0) ** 2
        + np.cos(np.radians(d)) * math.cos(math.radians(cone.dec)) * np.sin(np.radians(cone.ra - r) / 2.0) ** 2
    )
    dist = np.degrees(2.0 * np.arcsin(np.minimum(1.0, np.sqrt(h))))
    return idx[dist <= cone.radius]


def covering_cones(cones: list[Cone], cell: float) -> list[tuple[float, float, float]]:
    """Cones ``(ra, dec, r)`` (degrees) that together cover ``cones``, where cones whose
    centres lie within about ``cell`` degrees of each other share one.

    The centres are binned on a grid of declination bands ``cell`` high, each cut into RA
    cells about ``cell`` wide.  A cell with one cone keeps it; a cell with several gets one cone
    about their centres' mean direction, of radius the largest (distance from it + own radius),
    which contains each of them (the triangle inequality).  ``cell <= 0`` keeps every cone.
    """
    if cell <= 0 or len(cones) < 2:
        return [(c.ra, c.dec, c.radius) for c in cones]
    ra = np.array([c.ra for c in cones], float)
    dec = np.array([c.dec for c in cones], float)
    rad = np.array([c.radius for c in cones], float)
    band = np.floor((dec + 90.0) / cell)
    centre = np.radians(np.minimum(90.0, (band + 0.5) * cell - 90.0))
    per_band = np.maximum(1, np.floor(360.0 * np.cos(centre) / cell))
    key = band * 1e7 + np.floor(np.mod(ra, 360.0) / 360.0 * per_band)
    order = np.argsort(key, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(key[order]) != 0])
    out = []
    for members in np.split(order, starts[1:]):
        if len(members) == 1:
            k = members[0]
            out.append((float(ra[k]), float(dec[k]), float(rad[k])))
            continue
        v = unit(ra[members], dec[members]).sum(axis=0)
        v /= np.linalg.norm(v)
        ca = math.degrees(math.atan2(v[1], v[0])) % 360.0
        cd = math.degrees(math.asin(max(-1.0, min(1.0, v[2]))))
        reach = float(np.max(separation(ra[members], dec[members], ca, cd) + rad[members]))
        out.append((ca, cd, reach + 1e-12))
    return out
