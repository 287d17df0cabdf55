"""SODA 1.0 synchronous cutouts at ``/soda/sync`` (SODA 1.0 §3, §5).

``ID`` (one dataset), and one of ``POS`` (CIRCLE/RANGE/POLYGON), ``CIRCLE`` (DALI circle
``ra dec r``) or ``POLYGON`` (DALI polygon).  Returns FITS with the cutout's WCS; a region
with no pixels gives HTTP 204 (SODA 1.0 §3.3).  Errors are ``text/plain`` beginning with the
SODA vocabulary (``UsageError``, ``MultiValuedParamNotSupported``, ...).
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from flask import Blueprint, Response, current_app

from ..dali import Params, soda_regions
from ..faults import Fault, NotFoundFault, UsageFault
from . import vosi
from .errors import soda_error

bp = Blueprint("soda", __name__)


def gw():
    return current_app.extensions["vo_gateway"]


def find_image(image_id: str):
    for a in gw().image_archives():
        for r in a.image_records():
            if r["obs_publisher_did"].lower() == image_id.lower():
                return a, r
    raise NotFoundFault(f"no dataset with ID {image_id}")


@bp.route("/sync", methods=["GET", "POST"])
def sync():
    p = Params.from_request()
    try:
        ids = p.getlist("ID")
        if not ids:
            raise UsageFault("ID is required")
        if len(ids) > 1:
            return multi_valued("this service cuts one ID per request")
        shapes = soda_regions(Params.pairs_from_request())
        if len(shapes) > 1:
            return multi_valued("give one of POS, CIRCLE or POLYGON, once")
        archive, rec = find_image(ids[0])
        if not shapes:
            raise UsageFault("give a region: POS, CIRCLE or POLYGON")
        gw().queries._allowed(gw().actor(), "cutout", archive.name, ids[0])
        query = {"ID": ids[0], "shape": shapes[0]}
        gw().queries.started(gw().actor(), "soda", archive.name, query)
        try:
            data = archive.cutout(rec["obs_publisher_did"], shapes[0])
        except Fault as f:
            gw().queries.finished(gw().actor(), "soda", archive.name, query, None, 0, error=str(f))
            raise
        gw().queries.finished(gw().actor(), "soda", archive.name, query, None, 0 if data is None else 1)
    except Fault as f:
        return soda_error(f)
    if data is None:
        return Response(status=204)
    return Response(
        data,
        mimetype="application/fits",
        headers={"Content-Disposition": f'inline; filename="{rec["obs_id"]}-cutout.fits"'},
    )


def multi_valued(message: str) -> Response:
    """SODA 1.0 §3.1's ``MultiValuedParamNotSupported`` error (400, ``text/plain``)."""
    return Response(f"MultiValuedParamNotSupported: {message}\n", status=400, mimetype="text/plain")


def soda_archive(name: str):
    """The archive whose SODA service is at ``/soda/{name}/`` (capabilities.datalink_proxy);
    NotFoundFault otherwise."""
    a = gw().catalogue.archives.get(name)
    if a is None or not a.capabilities.datalink_proxy:
        raise NotFoundFault(f"no SODA service for archive {name}")
    return a


@bp.route("/<archive>/sync", methods=["GET", "POST"])
def proxy_sync(archive):
    """SODA sync of an upstream archive (the accessURL its DataLink descriptors point to when
    ``datalink_access: gateway``): parameters forwarded, the answer streamed back."""
    try:
        a = soda_archive(archive)
        p = Params.from_request()
        ids = p.getlist("ID")
        regions = sum(len(p.getlist(k)) for k in ("POS", "CIRCLE", "POLYGON"))
        if len(ids) > 1 or regions > 1:  # SODA 1.0 §3.1: sync answers one cutout
            more = f"; several go to {gw().url(f'soda/{a.name}/async')}" if a.capabilities.soda_async else ""
            return multi_valued(f"SODA sync takes one ID and one of POS, CIRCLE or POLYGON{more}")
        if not ids:
            raise UsageFault("give exactly one ID")
        gw().queries._allowed(gw().actor(), "cutout", a.name, ids[0])
        pairs = Params.pairs_from_request()
        gw().queries.started(gw().actor(), "soda", a.name, dict(pairs))
        try:
            status, ctype, body = a.soda(pairs, gw().actor())
        except Fault as f:
            gw().queries.finished(gw().actor(), "soda", a.name, dict(pairs), None, 0, error=str(f))
            raise
        gw().queries.finished(
            gw().actor(),
            "soda",
            a.name,
            dict(pairs),
            None,
            1 if status == 200 else 0,
            error=None if status < 400 else f"HTTP {status}",
        )
    except Fault as f:
        return soda_error(f)
    return Response(body, status=status, content_type=ctype)


def _capabilities(base: str, modes=("sync",)) -> Response:
    caps = [
        (
            f'<capability standardID="ivo://ivoa.net/std/SODA#{m}-1.0"><interface xsi:type="vs:ParamHTTP" '
            f'role="std"><accessURL use="full">{escape(base)}/{m}</accessURL></interface></capability>\n'
        )
        for m in modes
    ]
    caps += [
        vosi.vosi_capability("ivo://ivoa.net/std/VOSI#capabilities", base + "/capabilities"),
        vosi.vosi_capability("ivo://ivoa.net/std/VOSI#availability", base + "/availability"),
    ]
    return Response(vosi.capabilities_document(caps), mimetype="text/xml")


@bp.route("/capabilities")
def capabilities():
    return _capabilities(gw().url("soda"))


@bp.route("/<archive>/capabilities")
def archive_capabilities(archive):
    """VOSI capabilities of an archive's SODA service (SODA 1.0 §2, SODA-01): sync, and async
    where the archive runs SODA jobs."""
    try:
        a = soda_archive(archive)
    except Fault as f:
        return soda_error(f)
    return _capabilities(gw().url(f"soda/{archive}"), ("sync", "async") if a.capabilities.soda_async else ("sync",))


@bp.route("/<archive>/availability")
def archive_availability(archive):
    try:
        a = soda_archive(archive)
    except Fault as f:
        return soda_error(f)
    ok, note = a.availability()
    return Response(vosi.availability_document(ok, [note]), mimetype="text/xml")
