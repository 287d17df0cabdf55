"""Simple Image Access: SIA 2.0 at ``/sia/query`` (with ``/sia/capabilities`` and
``/sia/availability``) and SIA 1.0 at ``/sia1``, over every archive with images, plus the
dataset download ``/data/{archive}/{obs_id}.fits``.

SIA 2.0 §2: all parameters multi-valued, values of one parameter OR-ed, parameters AND-ed;
POS is ``CIRCLE``, ``RANGE`` or ``POLYGON`` (ICRS degrees); BAND (m), TIME (MJD), FOV (deg),
SPATRES (arcsec), EXPTIME/TIMERES (s), SPECRP are a value or a ``lo hi`` interval.  Errors:
DALI VOTables whose message starts with ``UsageFault:`` (SIA 2.0 §4).
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

import pyarrow as pa
import pyarrow.compute as pc
from flask import Blueprint, Response, current_app, send_file

from ..archive import ImageQuery
from ..dali import Params, dali_number, parse_shape
from ..faults import Fault, NotFoundFault, UsageFault
from ..formats.datalink import links_descriptor
from ..formats.votable import error_document
from ..rowstream import RowStream
from ..schema import Column
from . import vosi
from .errors import dali_error

bp = Blueprint("sia", __name__)


def gw():
    return current_app.extensions["vo_gateway"]


def parse_interval(value: str, name: str) -> tuple[float, float]:
    parts = value.split()
    if len(parts) == 1:
        v = dali_number(parts[0], name)
        return (v, v)
    if len(parts) == 2:
        lo, hi = dali_number(parts[0], name), dali_number(parts[1], name)
        if lo > hi:
            raise UsageFault(f"{name}: interval lower bound {lo} is above upper bound {hi}")
        return (lo, hi)
    raise UsageFault(f"{name}: expected a value or 'lo hi', got {value!r}")


def sia2_query(p: Params) -> ImageQuery:
    q = ImageQuery()
    q.pos = [parse_shape(v) for v in p.getlist("POS")]
    for key in ("band", "time", "fov", "spatres", "exptime", "timeres", "specrp"):
        setattr(q, key, [parse_interval(v, key.upper()) for v in p.getlist(key)])
    for key in ("pol", "id", "collection", "facility", "instrument", "dptype", "target", "format"):
        setattr(q, key, p.getlist(key))
    try:
        q.calib = [int(v) for v in p.getlist("CALIB")]
    except ValueError:
        raise UsageFault("CALIB must be an integer 0-4")
    q.maxrec = p.get_int("MAXREC")
    return q


def with_access_urls(stream: RowStream, archive: str) -> RowStream:
    base = gw().url(f"data/{archive}") + "/"  # Gateway.url strips a trailing slash
    orig = stream.batches
    names = [c.name for c in stream.columns]
    i_url, i_id = names.index("access_url"), names.index("obs_id")

    def batches():
        for b in orig:
            arrays = list(b.columns)
            arrays[i_url] = pc.binary_join_element_wise(base, arrays[i_id], ".fits", "")
            yield pa.RecordBatch.from_arrays(arrays, names=names)

    stream.batches = batches()
    return stream


@bp.route("/sia/query", methods=["GET", "POST"])
def sia2():
    try:
        p = Params.from_request()
        fmt_value = p.get("RESPONSEFORMAT") or "application/x-votable+xml"
        fmt = gw().formats.lookup(fmt_value)
        if fmt is None:
            raise UsageFault(f"unsupported RESPONSEFORMAT {fmt_value!r}")
        q = sia2_query(p)
        limit = min(
            q.maxrec if q.maxrec is not None else gw().config.service.sia_maxrec, gw().config.service.sia_maxrec
        )
        q.maxrec = limit
        merged = gw().queries.images(q, gw().actor(), with_access_urls)
    except Fault as f:
        return dali_error(f, label=True)
    if fmt.is_votable:
        from ..formats.votable import write_votable

        ser = "tabledata" if "tabledata" in fmt.mime else "binary" if fmt.mime.endswith("=binary") else "binary2"
        body = write_votable(
            merged,
            [("standardID", "ivo://ivoa.net/std/SIA#query-2.0")],
            ser,
            postamble=links_descriptor(gw().url("datalink/links"), "obs_publisher_did"),
            field_ids={"obs_publisher_did": "obs_publisher_did"},
        )
        return Response(body, content_type=fmt_value if "/" in fmt_value else fmt.mime)
    return Response(fmt.writer(merged, []), content_type=fmt.mime)


@bp.route("/sia/capabilities")
def sia2_capabilities():
    base = gw().url("sia")
    caps = [
        (
            '<capability standardID="ivo://ivoa.net/std/SIA#query-2.0"><interface xsi:type="vs:ParamHTTP" '
            f'role="std" version="2.0"><accessURL use="base">{escape(base)}/query</accessURL></interface></capability>\n'
        ),
        vosi.vosi_capability("ivo://ivoa.net/std/VOSI#capabilities", base + "/capabilities"),
        vosi.vosi_capability("ivo://ivoa.net/std/VOSI#availability", base + "/availability"),
    ]
    return Response(vosi.capabilities_document(caps), mimetype="text/xml")


@bp.route("/sia/availability")
@bp.route("/soda/availability")
@bp.route("/datalink/availability")
def sia_availability():
    ok, notes = gw().availability()
    return Response(vosi.availability_document(ok, notes), mimetype="text/xml")


# -- SIA 1.0 -----------------------------------------------------------------------------------
SIA1_COLUMNS = [
    Column("title", "char", "*", ucd="VOX:Image_Title", description="Image title"),
    Column("ra", "double", ucd="POS_EQ_RA_MAIN", unit="deg", description="Image centre RA (ICRS)"),
    Column("dec", "double", ucd="POS_EQ_DEC_MAIN", unit="deg", description="Image centre Dec (ICRS)"),
    Column("naxes", "int", ucd="VOX:Image_Naxes", description="Number of image axes"),
    Column("naxis", "int", "*", ucd="VOX:Image_Naxis", description="Image size in pixels per axis"),
    Column("scale", "double", "*", ucd="VOX:Image_Scale", unit="deg", description="Pixel scale per axis"),
    Column("format", "char", "*", ucd="VOX:Image_Format", description="MIME type of the image"),
    Column("mjd_obs", "double", ucd="VOX:Image_MJDateObs", unit="d", description="MJD of the observation"),
    Column("bandpass_id", "char", "*", ucd="VOX:BandPass_ID", description="Filter name"),
    Column("bandpass_refvalue", "double", ucd="VOX:BandPass_RefValue", unit="m", description="Central wavelength"),
    Column("coord_ref_frame", "char", "*", ucd="VOX:STC_CoordRefFrame", description="Coordinate frame"),
    Column("filesize", "long", ucd="VOX:Image_FileSize", unit="byte", description="Estimated file size"),
    Column("access_url", "char", "*", ucd="VOX:Image_AccessReference", description="Image URL"),
]
INTERSECTS = ("COVERS", "ENCLOSED", "CENTER", "OVERLAPS")


@bp.route("/sia1", methods=["GET", "POST"])
def sia1():
    """SIA 1.0 §4: POS=ra,dec; SIZE=s or sra,sdec (deg); INTERSECT (default OVERLAPS); FORMAT."""
    p = Params.from_request()
    try:
        fmt = (p.get("FORMAT") or "ALL").strip()
        formats = [f.strip().lower() for f in fmt.split(",")]
        metadata = "metadata" in formats or p.get_int("MAXREC") == 0
        records = []
        if not metadata:
            pos = p.get("POS")
            if pos is None:
                raise UsageFault("POS is required (POS=ra,dec in ICRS degrees)")
            try:
                ra, dec = (float(x) for x in pos.split(","))
            except ValueError:
                raise UsageFault(f"POS must be 'ra,dec' in degrees, got {pos!r}")
            size = p.get("SIZE")
            if size is None:
                raise UsageFault("SIZE is required (SIZE=s or SIZE=sra,sdec in degrees)")
            try:
                sz = [float(x) for x in size.split(",")]
            except ValueError:
                raise UsageFault(f"SIZE must be one or two numbers in degrees, got {size!r}")
            sra, sdec = (sz[0], sz[0]) if len(sz) == 1 else sz[:2]
            mode = (p.get("INTERSECT") or "OVERLAPS").upper()
            if mode not in INTERSECTS:
                raise UsageFault(f"INTERSECT must be one of {', '.join(INTERSECTS)}")
            if "all" in formats or "image/fits" in formats:  # the archives' images are FITS
                records = gw().queries.sia1_images(ra, dec, sra, sdec, mode, gw().actor(), {"POS": pos, "SIZE": size})
    except Fault as f:
        body = error_document(str(f))
        return Response(body, status=f.status, mimetype="text/xml")
    return Response(_sia1_votable(records, metadata), mimetype="text/xml")


def _sia1_votable(records, metadata: bool) -> str:
    from ..formats.votable import HEADER, field_xml, info_xml

    out = [HEADER, '<RESOURCE type="results">\n', info_xml("QUERY_STATUS", "OK")]
    for name, desc in (
        ("POS", "Search position ra,dec (ICRS degrees)"),
        ("SIZE", "Search size in degrees"),
        ("INTERSECT", "COVERS, ENCLOSED, CENTER or OVERLAPS"),
        ("FORMAT", "Image format"),
    ):
        out.append(
            f'<PARAM name="INPUT:{name}" datatype="char" arraysize="*" value=""><DESCRIPTION>{desc}'
            "</DESCRIPTION></PARAM>\n"
        )
    out.append("<TABLE>\n")
    out += [field_xml(c) for c in SIA1_COLUMNS]
    out.append("<DATA><TABLEDATA>\n")
    for archive, r in records:
        local = "_footprint" in r  # the archive's own files, served at /data/{archive}/
        xel = (r.get("s_xel1"), r.get("s_xel2"))
        scale = r["s_fov"] / math.hypot(*xel) if None not in xel and r.get("s_fov") else None
        url = gw().url(f"data/{archive.name}/{r['obs_id']}.fits") if local else r.get("access_url") or ""
        em = (r["em_min"] + r["em_max"]) / 2 if r.get("em_min") is not None and r.get("em_max") is not None else None
        cells = [
            r["obs_id"],
            repr(r["s_ra"]),
            repr(r["s_dec"]),
            "2",
            f"{xel[0]} {xel[1]}" if None not in xel else "",
            f"{scale!r} {scale!r}" if scale else "",
            "image/fits",
            repr(r["t_min"]) if r.get("t_min") is not None else "",
            (r.get("_band") or "") if local else "",
            repr(em) if em is not None else "",
            "ICRS",
            str(r["access_estsize"] * 1024) if r.get("access_estsize") is not None else "",
            url,
        ]
        out.append("<TR>" + "".join(f"<TD>{escape(c)}</TD>" for c in cells) + "</TR>\n")
    out.append("</TABLEDATA></DATA>\n</TABLE>\n")
    if metadata:
        out.append(info_xml("QUERY_STATUS", "OVERFLOW"))
    out.append("</RESOURCE>\n</VOTABLE>\n")
    return "".join(out)


@bp.route("/data/<archive>/<obs_id>.fits")
def dataset(archive, obs_id):
    a = gw().catalogue.archives.get(archive)
    if a is None or not a.capabilities.images:
        return dali_error(NotFoundFault(f"no image archive {archive}"))
    try:
        path = a.image_file(obs_id)
    except Fault as f:
        return dali_error(f)
    return send_file(path, mimetype="image/fits", download_name=f"{obs_id}.fits", conditional=True)
