"""ObsCore 1.1 columns (ObsCore 1.1 §3, Table 1 and Appendix C) for SIA 2.0 responses, and
the SIA 2.0 / SODA shape helpers shared by every image archive.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from .faults import UsageFault
from .schema import ARROW_TYPES, Column


def _oc(name, datatype, ucd, unit=None, desc=None, arraysize=None, xtype=None):
    return Column(
        name,
        datatype,
        arraysize=arraysize,
        xtype=xtype,
        unit=unit,
        ucd=ucd,
        utype="obscore:" + UTYPES[name],
        description=desc,
        principal=True,
        std=True,
    )


UTYPES = {
    "dataproduct_type": "ObsDataset.dataProductType",
    "calib_level": "ObsDataset.calibLevel",
    "obs_collection": "DataID.Collection",
    "obs_id": "DataID.observationID",
    "obs_publisher_did": "Curation.PublisherDID",
    "access_url": "Access.Reference",
    "access_format": "Access.Format",
    "access_estsize": "Access.Size",
    "target_name": "Target.Name",
    "s_ra": "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1",
    "s_dec": "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2",
    "s_fov": "Char.SpatialAxis.Coverage.Bounds.Extent.diameter",
    "s_region": "Char.SpatialAxis.Coverage.Support.Area",
    "s_resolution": "Char.SpatialAxis.Resolution.Refval.value",
    "s_xel1": "Char.SpatialAxis.numBins1",
    "s_xel2": "Char.SpatialAxis.numBins2",
    "t_min": "Char.TimeAxis.Coverage.Bounds.Limits.StartTime",
    "t_max": "Char.TimeAxis.Coverage.Bounds.Limits.StopTime",
    "t_exptime": "Char.TimeAxis.Coverage.Support.Extent",
    "t_resolution": "Char.TimeAxis.Resolution.Refval.value",
    "t_xel": "Char.TimeAxis.numBins",
    "em_min": "Char.SpectralAxis.Coverage.Bounds.Limits.LoLimit",
    "em_max": "Char.SpectralAxis.Coverage.Bounds.Limits.HiLimit",
    "em_res_power": "Char.SpectralAxis.Resolution.ResolPower.refVal",
    "em_xel": "Char.SpectralAxis.numBins",
    "o_ucd": "Char.ObservableAxis.ucd",
    "pol_states": "Char.PolarizationAxis.stateList",
    "pol_xel": "Char.PolarizationAxis.numBins",
    "facility_name": "Provenance.ObsConfig.Facility.name",
    "instrument_name": "Provenance.ObsConfig.Instrument.name",
}

OBSCORE_COLUMNS = [
    _oc("dataproduct_type", "char", "meta.code.class", None, "Data product type (image)", "*"),
    _oc("calib_level", "int", "meta.code;obs.calib", None, "Calibration level (0-4)"),
    _oc("obs_collection", "char", "meta.id", None, "Name of the data collection", "*"),
    _oc("obs_id", "char", "meta.id", None, "Observation identifier", "*"),
    _oc("obs_publisher_did", "char", "meta.ref.ivoid", None, "Publisher dataset identifier (SODA/DataLink ID)", "*"),
    _oc("access_url", "char", "meta.ref.url", None, "URL of the dataset", "*"),
    _oc("access_format", "char", "meta.code.mime", None, "MIME type of the dataset", "*"),
    _oc("access_estsize", "long", "phys.size;meta.file", "kbyte", "Estimated dataset size"),
    _oc("target_name", "char", "meta.id;src", None, "Target name", "*"),
    _oc("s_ra", "double", "pos.eq.ra", "deg", "Central right ascension, ICRS"),
    _oc("s_dec", "double", "pos.eq.dec", "deg", "Central declination, ICRS"),
    _oc("s_fov", "double", "phys.angSize;instr.fov", "deg", "Diameter of the covered region"),
    _oc("s_region", "double", "pos.outline;obs.field", "deg", "Footprint polygon (ICRS)", "*", "polygon"),
    _oc("s_resolution", "double", "pos.angResolution", "arcsec", "Spatial resolution (PSF FWHM)"),
    _oc("s_xel1", "long", "meta.number", None, "Number of pixels along the first axis"),
    _oc("s_xel2", "long", "meta.number", None, "Number of pixels along the second axis"),
    _oc("t_min", "double", "time.start;obs.exposure", "d", "Start time, MJD (UTC)"),
    _oc("t_max", "double", "time.end;obs.exposure", "d", "Stop time, MJD (UTC)"),
    _oc("t_exptime", "double", "time.duration;obs.exposure", "s", "Exposure time"),
    _oc("t_resolution", "double", "time.resolution", "s", "Temporal resolution"),
    _oc("t_xel", "long", "meta.number", None, "Number of time samples"),
    _oc("em_min", "double", "em.wl;stat.min", "m", "Minimum wavelength"),
    _oc("em_max", "double", "em.wl;stat.max", "m", "Maximum wavelength"),
    _oc("em_res_power", "double", "spect.resolution", None, "Spectral resolving power"),
    _oc("em_xel", "long", "meta.number", None, "Number of spectral samples"),
    _oc("o_ucd", "char", "meta.ucd", None, "UCD of the observable", "*"),
    _oc("pol_states", "char", "meta.code;phys.polarization", None, "Polarization states", "*"),
    _oc("pol_xel", "long", "meta.number", None, "Number of polarization samples"),
    _oc("facility_name", "char", "meta.id;instr.tel", None, "Facility (telescope)", "*"),
    _oc("instrument_name", "char", "meta.id;instr", None, "Instrument", "*"),
]


def obscore_batch(records: list[dict]) -> pa.RecordBatch:
    """Arrow batch of ObsCore records (dicts keyed by ObsCore column names; missing = null)."""
    arrays = []
    for c in OBSCORE_COLUMNS:
        typ = pa.list_(pa.float64()) if c.name == "s_region" else ARROW_TYPES[c.datatype]
        arrays.append(pa.array([r.get(c.name) for r in records], type=typ))
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in OBSCORE_COLUMNS])


# -- spherical helpers -----------------------------------------------------------------------
def unit(ra, dec):
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


def record_matches(rec: dict, q, band: bool = True, time: bool = True) -> bool:
    """Whether one ObsCore record satisfies the non-positional SIA 2.0 constraints of ``q``
    (:class:`gateway.archive.ImageQuery`, SIA 2.0 §2.1: values of one parameter OR-ed,
    parameters AND-ed).  ``band``/``time`` False skip constraints an upstream already applied."""

    def within(v, intervals):
        return not intervals or (v is not None and any(lo <= v <= hi for lo, hi in intervals))

    def overlaps(lo, hi, intervals):
        return not intervals or (lo is not None and hi is not None and any(a <= hi and b >= lo for a, b in intervals))

    return (
        (not band or overlaps(rec.get("em_min"), rec.get("em_max"), q.band))
        and (not time or overlaps(rec.get("t_min"), rec.get("t_max"), q.time))
        and within(rec.get("t_exptime"), q.exptime)
        and within(rec.get("s_fov"), q.fov)
        and within(rec.get("s_resolution"), q.spatres)
        and (not q.collection or rec.get("obs_collection") in q.collection)
        and (not q.facility or rec.get("facility_name") in q.facility)
        and (not q.instrument or rec.get("instrument_name") in q.instrument)
        and (not q.dptype or rec.get("dataproduct_type") in q.dptype)
        and (not q.calib or rec.get("calib_level") in q.calib)
        and (not q.target or rec.get("target_name") in q.target)
        and (not q.id or (rec.get("obs_publisher_did") or "").lower() in [i.lower() for i in q.id])
        and (not q.format or rec.get("access_format") in q.format)
    )


# -- SIA 2.0 / SODA shapes ----------------------------------------------------------------
def dali_number(v: str, what: str) -> float:
    """A DALI number: a float or +Inf/-Inf (DALI 1.1 §3.3.2); UsageFault naming ``what`` otherwise."""
    v = v.strip()
    low = v.lower()
    if low in ("+inf", "inf"):
        return math.inf
    if low == "-inf":
        return -math.inf
    try:
        return float(v)
    except ValueError:
        raise UsageFault(f"{what}: {v!r} is not a number")


def parse_shape(value: str, name: str = "POS") -> tuple:
    """DALI/SIA2/SODA shape: ``CIRCLE ra dec r`` | ``RANGE ra1 ra2 dec1 dec2`` |
    ``POLYGON ra1 dec1 ...`` (SIA 2.0 §2.1.1; SODA 1.0 §3.3.1)."""
    parts = value.split()
    if not parts:
        raise UsageFault(f"{name} is empty")
    kind = parts[0].upper()
    nums = [dali_number(x, name) for x in parts[1:]]
    if any(math.isnan(n) for n in nums):
        raise UsageFault(f"{name}: NaN is not a coordinate ({value!r})")
    if kind == "CIRCLE":
        if len(nums) != 3:
            raise UsageFault(f"{name}: CIRCLE needs ra dec radius, got {value!r}")
        ra, dec, r = nums
        if not (0 <= ra <= 360 and -90 <= dec <= 90 and 0 < r <= 180):
            raise UsageFault(f"{name}: CIRCLE out of range ({value!r}); ra in [0,360], dec in [-90,90], r in (0,180]")
        return ("circle", ra, dec, r)
    if kind == "RANGE":
        if len(nums) != 4:
            raise UsageFault(f"{name}: RANGE needs ra1 ra2 dec1 dec2, got {value!r}")
        if nums[0] > nums[1] or nums[2] > nums[3]:
            raise UsageFault(f"{name}: RANGE bounds must be ordered low to high ({value!r})")
        return ("range", *nums)
    if kind == "POLYGON":
        if len(nums) < 6 or len(nums) % 2:
            raise UsageFault(f"{name}: POLYGON needs at least three ra dec pairs, got {value!r}")
        if any(math.isinf(n) for n in nums):
            raise UsageFault(f"{name}: POLYGON vertices must be finite")
        if any(not -90 <= d <= 90 for d in nums[1::2]):
            raise UsageFault(f"{name}: POLYGON declinations must lie in [-90, 90] ({value!r})")
        return ("polygon", *nums)
    raise UsageFault(f"{name}: unknown shape {parts[0]!r}; use CIRCLE, RANGE or POLYGON")


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
