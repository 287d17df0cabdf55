"""DataLink 1.1 ``/datalink/links`` (DataLink 1.1 §3): for every image ID a ``#this`` row
(the FITS file) and a ``#cutout`` row pointing at the SODA service descriptor in the same
document; unknown IDs get a ``NotFoundFault`` row.  TABLEDATA, content type
``application/x-votable+xml;content=datalink``."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from ..archive import Link
from ..dali import Params
from ..faults import Fault, UsageFault
from ..formats.datalink import MIME, links_document, soda_descriptor
from .errors import dali_error

bp = Blueprint("datalink", __name__)


def gw():
    return current_app.extensions["vo_gateway"]


@bp.route("/<archive>/links", methods=["GET", "POST"])
def archive_links(archive):
    """DataLink for the dataset IDs of one archive (IDs that only make sense within it, e.g.
    catalogue row identifiers referenced by a service descriptor of a TAP result)."""
    a = gw().catalogue.archives.get(archive)
    try:
        if a is None or not a.capabilities.datalink_proxy:
            raise Fault(f"no DataLink service for archive {archive}", status=404)
        ids = Params.from_request().getlist("ID")
        if not ids:
            raise UsageFault("ID is required")
        return archive_document(a, ids)
    except Fault as f:
        return dali_error(f, label=True)


def archive_document(a, ids: list[str]) -> Response:
    """The DataLink document an archive writes for its own IDs (the SODA service's links)."""
    return Response(gw().cutouts.links(a, ids, gw().actor()), content_type=MIME)


@bp.route("/links", methods=["GET", "POST"])
def links():
    p = Params.from_request()
    try:
        fmt = p.get("RESPONSEFORMAT")
        if fmt and fmt.split(";")[0].strip().lower() not in ("votable", "application/x-votable+xml", "text/xml"):
            raise UsageFault(f"unsupported RESPONSEFORMAT {fmt!r}; DataLink answers VOTable")
        ids = p.getlist("ID")
        upstream = {
            a.name: a
            for a in gw().catalogue.archives.values()
            for i in ids
            if a.capabilities.datalink_proxy and a.claims(i)
        }
        if upstream:
            if len(upstream) > 1 or not all(next(iter(upstream.values())).claims(i) for i in ids):
                raise UsageFault("these IDs belong to different archives; ask for each archive's IDs separately")
            return archive_document(next(iter(upstream.values())), ids)
    except Fault as f:
        return dali_error(f, label=True)
    rows: list[Link] = []
    for i in ids:
        try:
            archive, rec = gw().cutouts.find_image(i)
        except Fault as f:
            rows.append(Link(i, error_message=f"{f.label}: {f}", semantics="#this"))
            continue
        url = gw().url(f"data/{archive.name}/{rec['obs_id']}.fits")
        rows.append(
            Link(
                i,
                access_url=url,
                description=f"full image {rec['obs_id']}",
                semantics="#this",
                content_type="image/fits",
                content_length=int(rec["access_estsize"]) * 1024,
            )
        )
        rows.append(
            Link(
                i,
                service_def="soda",
                description="SODA cutout of this image (POS, CIRCLE or POLYGON)",
                semantics="#cutout",
                content_type="image/fits",
            )
        )
    return Response(links_document(rows, soda_descriptor(gw().url("soda/sync"))), content_type=MIME)
