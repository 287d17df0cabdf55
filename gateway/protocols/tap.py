"""TAP 1.1 (sync) and its VOSI resources under ``/tap`` (TAP 1.1 §2).

``/tap/sync`` (GET, POST): LANG, QUERY, MAXREC, RESPONSEFORMAT/FORMAT; REQUEST=doQuery and
unknown parameters are ignored (TAP 1.1 §2.7, DALI 1.1 §3).  ``/tap/capabilities``,
``/tap/availability``, ``/tap/tables[/{schema.table}]``, ``/tap/examples``.
"""

from __future__ import annotations

import itertools
from xml.sax.saxutils import escape

from flask import Blueprint, Response, current_app, request

from ..dali import Params
from ..faults import Fault, NotFoundFault
from . import vosi
from .errors import dali_error

bp = Blueprint("tap", __name__)
XML = "text/xml"


def gw():
    return current_app.extensions["vo_gateway"]


@bp.route("/sync", methods=["GET", "POST"])
def sync():
    g, actor = gw(), gw().actor()
    client = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    context, release = g.queries.sync_context(actor, g.url(), client)
    try:
        p = Params.from_request()
        fmt, ctype = g.formats.for_params(p)
        chunks = g.queries.tap_answer(
            p, fmt, actor, context, request.files.get, service_url=g.url(), on_done=lambda rows: release()
        )
    except Fault as f:
        release()
        return dali_error(f)
    except BaseException:
        release()
        raise
    try:  # a writer that needs every row before its first byte (FITS) fails here, before the status is sent
        first = next(chunks, b"")
    except Fault as f:
        chunks.close()
        return dali_error(f)
    return Response(itertools.chain([first], chunks), mimetype=None, content_type=ctype)


@bp.route("/capabilities")
def capabilities():
    base = gw().url("tap")
    caps = [
        vosi.tap_capability(
            base,
            gw().formats.formats,
            gw().config.service,
            gw().geometry_functions(),
            gw().config.jobs,
            gw().config.uploads,
            gw().udfs(),
            gw().any_archive("set_operations"),
            gw().any_archive("common_tables"),
        ),
        vosi.vosi_capability("ivo://ivoa.net/std/VOSI#capabilities", base + "/capabilities"),
        vosi.vosi_capability("ivo://ivoa.net/std/VOSI#availability", base + "/availability"),
        vosi.vosi_capability("ivo://ivoa.net/std/VOSI#tables-1.1", base + "/tables"),
        vosi.vosi_capability("ivo://ivoa.net/std/DALI#examples", base + "/examples"),
    ]
    resp = Response(vosi.capabilities_document(caps), mimetype=XML)
    resp.last_modified = gw().started
    return resp


@bp.route("/availability")
def availability():
    ok, notes = gw().availability()
    return Response(vosi.availability_document(ok, notes), mimetype=XML)


@bp.route("/tables")
def tables():
    p = Params.from_request()
    detail = (p.get("DETAIL") or "max").lower() != "min"
    return Response(vosi.tableset_document(gw().catalogue, detail), mimetype=XML)


@bp.route("/tables/<path:name>")
def table(name):
    found = gw().catalogue.table(name)
    if found is None:
        return dali_error(NotFoundFault(f"no table {name}"))
    return Response(
        '<?xml version="1.0" encoding="UTF-8"?>\n' + vosi.table_xml(found[1], True, root=True), mimetype=XML
    )


@bp.route("/examples")
def examples():
    items = []
    for key, (name, desc, query, tables) in gw().examples().items():
        tabs = "".join(f'<span property="table">{escape(t)}</span> ' for t in tables)
        items.append(
            f'<div typeof="example" id="{key}" resource="#{key}">\n<h2 property="name">{escape(name)}</h2>\n'
            f"<p>{escape(desc)}</p>\n"
            f'<pre class="dali-example" property="query">{escape(query)}</pre>\n<p>Tables: {tabs}</p>\n</div>\n'
        )
    html = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html>\n<html xmlns="http://www.w3.org/1999/xhtml">'
        "<head><title>vo-gateway TAP examples</title></head>\n"
        '<body vocab="http://www.ivoa.net/rdf/examples#">\n<h1>TAP examples</h1>\n'
        + "".join(items)
        + "</body></html>\n"
    )
    return Response(html, mimetype="application/xhtml+xml")


@bp.route("/")
@bp.route("")
def root():
    base = gw().url("tap")
    return Response(
        f"<!DOCTYPE html><html><head><title>TAP service</title></head><body><h1>TAP service</h1>"
        f"<p>Paste <code>{escape(base)}</code> into TOPCAT (VO &#8594; Table Access Protocol).</p>"
        f'<ul><li><a href="{base}/capabilities">capabilities</a></li><li><a href="{base}/tables">tables</a></li>'
        f'<li><a href="{base}/availability">availability</a></li><li><a href="{base}/examples">examples</a></li>'
        "</ul></body></html>",
        mimetype="text/html",
    )
