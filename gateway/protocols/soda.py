"""SODA 1.0 synchronous cutouts at ``/soda/sync`` (SODA 1.0 §3, §5).

``ID`` (one dataset), and one of ``POS`` (CIRCLE/RANGE/POLYGON), ``CIRCLE`` (DALI circle
``ra dec r``) or ``POLYGON`` (DALI polygon).  Returns FITS with the cutout's WCS; a region
with no pixels gives HTTP 204 (SODA 1.0 §3.3).  ``RESPONSEFORMAT=image/png`` (or ``png``;
DALI 1.1 §3.4.3) gives an asinh-stretched PNG preview of the cutout instead
(:mod:`gateway.formats.preview`), for browsers and thumbnails.  Errors are ``text/plain`` beginning with the
SODA vocabulary (``UsageError``, ``MultiValuedParamNotSupported``, ...).
"""

from __future__ import annotations

from dataclasses import replace
from xml.sax.saxutils import escape

from flask import Blueprint, Response, current_app

from ..archive import CutoutRequest
from ..dali import Params, soda_regions
from ..faults import Fault, MultiValuedFault, NotFoundFault, UsageFault
from ..formats import preview
from . import vosi
from .errors import soda_error

bp = Blueprint("soda", __name__)


def gw():
    return current_app.extensions["vo_gateway"]


def _request(more: str = "") -> CutoutRequest:
    """The one ID and at most one region of a SODA sync request (SODA 1.0 §3.1: sync answers
    one cutout; several are MultiValuedParamNotSupported, ``more`` says where they can go)."""
    pairs = [(k.upper(), v) for k, v in Params.pairs_from_request()]
    ids = [v for k, v in pairs if k == "ID"]
    regions = soda_regions(pairs)
    if len(ids) > 1 or len(regions) > 1:
        raise MultiValuedFault(f"SODA sync takes one ID and one of POS, CIRCLE or POLYGON{more}")
    if not ids:
        raise UsageFault("ID is required")
    return CutoutRequest(ids[0], regions[0] if regions else None, pairs)


def _wants_png(req: CutoutRequest) -> bool:
    """Whether the request's ``RESPONSEFORMAT`` asks for a PNG preview (FITS otherwise);
    UsageFault for a format SODA here cannot write."""
    value = next((v for k, v in req.params if k == "RESPONSEFORMAT"), "").strip().lower()
    if value in ("", "application/fits", "image/fits", "fits"):
        return False
    if value in (preview.PNG, "png"):
        return True
    raise UsageFault(f"unsupported RESPONSEFORMAT {value!r}; SODA here writes application/fits or image/png")


def _answer(cutout, png: bool = False) -> Response:
    if cutout is None:
        return Response(status=204)  # SODA 1.0 §3.3: the region holds no data
    if png:
        if "fits" not in cutout.content_type:
            raise UsageFault(f"a {cutout.content_type} cutout cannot be previewed as PNG")
        stem = (cutout.filename or "cutout").rsplit(".fits", 1)[0]
        body = preview.fits_to_png(b"".join(cutout.chunks))
        return Response(
            body, content_type=preview.PNG, headers={"Content-Disposition": f'inline; filename="{stem}.png"'}
        )
    headers = {"Content-Disposition": f'inline; filename="{cutout.filename}"'} if cutout.filename else {}
    return Response(cutout.chunks, content_type=cutout.content_type, headers=headers)


@bp.route("/sync", methods=["GET", "POST"])
def sync():
    """SODA sync of the gateway's own images (their publisher DIDs)."""
    try:
        req = _request()
        png = _wants_png(req)
        archive, rec = gw().cutouts.find_image(req.id)
        if req.region is None:
            raise UsageFault("give a region: POS, CIRCLE or POLYGON")
        return _answer(gw().cutouts.cutout(archive, replace(req, id=rec["obs_publisher_did"]), gw().actor()), png)
    except Fault as f:
        return soda_error(f)


def soda_archive(name: str):
    """The archive whose SODA service is at ``/soda/{name}/`` (capabilities.datalink_proxy);
    NotFoundFault otherwise."""
    a = gw().catalogue.archives.get(name)
    if a is None or not a.capabilities.datalink_proxy:
        raise NotFoundFault(f"no SODA service for archive {name}")
    return a


@bp.route("/<archive>/sync", methods=["GET", "POST"])
def proxy_sync(archive):
    """SODA sync of an archive's own dataset IDs (the accessURL its DataLink descriptors point
    to): the archive cuts or forwards, the answer is streamed back."""
    try:
        a = soda_archive(archive)
        more = f"; several go to {gw().url(f'soda/{a.name}/async')}" if a.capabilities.soda_async else ""
        req = _request(more)
        png = _wants_png(req)
        return _answer(gw().cutouts.cutout(a, req, gw().actor()), png)
    except Fault as f:
        return soda_error(f)


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
