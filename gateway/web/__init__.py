"""The browser interface (``docs/web.md``): server-rendered pages over the same protocol URLs
that TOPCAT and pyvo use, with a little vendored JavaScript (CodeMirror 5, Chart.js; see
``static/vendor/README.md``) and nothing fetched from outside the gateway's origin.

* ``/``: the query page (ADQL editor, schema browser, DALI examples, sync or async runs,
  a paged sortable result table, plots, download links for every advertised format);
* ``/ui/jobs``: the caller's UWS jobs (``/tap/async``), updated while they run;
* ``/ui/tables/{schema.table}``: a table's metadata, sample rows and a cone-search form;
* ``/ui/images``: SIA 2.0 images at a position with SODA cutout previews (PNG);
* ``/ui/schema.json``: archives, schemas, tables and columns for the schema browser.

The pages call the protocol endpoints themselves (``/tap/sync`` with
``RESPONSEFORMAT=application/json``, ``/tap/async``, ``/sia/query``, ``/soda/sync`` with
``RESPONSEFORMAT=image/png``), so a browser sees exactly what a script sees.  Templates are
Jinja2 with autoescaping on: nothing a user typed, nor any cell value, is rendered unescaped.

:func:`wants_html` decides when a protocol URL opened by a browser gets an HTML rendering
instead of XML (error documents, VOSI, UWS): only for a top-level browser navigation, never
for a client library (see its docstring).
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/static")

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"


def init_app(app: Flask) -> None:
    """Register the pages and the browser rendering of the protocol documents."""
    app.register_blueprint(bp)
    app.after_request(for_browsers)


#: VOSI and UWS documents shown as HTML to a browser (their root element's prefix)
BROWSABLE = re.compile(rb"<(vosi|uws):(tableset|table|capabilities|availability|jobs|job)\b")
TITLES = {
    "tableset": "VOSI tables",
    "table": "VOSI table",
    "capabilities": "VOSI capabilities",
    "availability": "VOSI availability",
    "jobs": "UWS job list",
    "job": "UWS job",
}
ERROR_KINDS = {
    400: "Bad request",
    401: "Authentication needed",
    403: "Forbidden",
    404: "Not found",
    429: "Too many requests",
}


def for_browsers(response: Response) -> Response:
    """``after_request``: when a browser navigates to a protocol URL (:func:`wants_html`),
    an error answer (4xx/5xx: a DALI or SCS error VOTable, a SODA ``text/plain`` error) becomes
    a readable page with the same message and status, and a VOSI or UWS document becomes an
    HTML rendering of it.  Clients, and every other answer, are left exactly as they were."""
    if request.blueprint == "web" or not wants_html() or response.mimetype == "text/html":
        return response
    if response.status_code >= 400:
        message = error_message(response.get_data(), response.mimetype or "")
        page = error_page(response.status_code, message, ERROR_KINDS.get(response.status_code, "Error"))
        for h in ("WWW-Authenticate", "Retry-After"):
            if h in response.headers:
                page.headers[h] = response.headers[h]
        return page
    if response.mimetype not in ("text/xml", "application/xml") or response.status_code != 200:
        return response
    chunks = response.iter_encoded()
    first = next(chunks, b"")
    found = BROWSABLE.search(first[:600])
    if found is None:
        response.response = itertools.chain([first], chunks)
        return response
    document = first + b"".join(chunks)
    title = TITLES[found.group(2).decode()]
    if title == "UWS job":
        job_id = re.search(rb"<uws:jobId>([^<]*)<", document)
        title += f" {job_id.group(1).decode()}" if job_id else ""
    return xml_page(document, title)


def error_message(body: bytes, mimetype: str) -> str:
    """The message of an error document: a VOTable's ``QUERY_STATUS`` INFO (DALI 1.1 §4.2) or
    SCS ``Error`` INFO (SCS 1.03 §3), or a plain-text body (SODA 1.0 §5.2)."""
    if "xml" in mimetype:
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return body.decode("utf-8", "replace")
        for info in root.iter():
            if _local(info.tag) == "INFO" and info.get("name") == "QUERY_STATUS" and info.get("value") == "ERROR":
                return (info.text or "").strip() or "the request failed"
            if _local(info.tag) == "INFO" and info.get("name") == "Error":
                return info.get("value") or "the request failed"
    return body.decode("utf-8", "replace").strip()


def gw():
    return current_app.extensions["vo_gateway"]


def wants_html() -> bool:
    """Whether this request is a browser opening the URL as a page (so an XML or VOTable
    answer is better shown as HTML).

    The ``Accept`` header alone cannot tell: Java's ``URLConnection`` (TOPCAT, STILTS) sends
    ``text/html, image/gif, image/jpeg, *; q=.2`` by default.  Browsers mark navigations with
    ``Sec-Fetch-Dest: document`` (Fetch Metadata, on secure and loopback origins) or
    ``Upgrade-Insecure-Requests: 1`` (on every origin); neither is sent by pyvo, astroquery,
    TOPCAT or STILTS.  The Accept header must also rank ``text/html`` first.
    """
    h = request.headers
    navigation = h.get("Sec-Fetch-Dest") == "document" or h.get("Upgrade-Insecure-Requests") == "1"
    if not navigation or h.get("Sec-Fetch-Dest", "document") != "document":
        return False
    accept = request.accept_mimetypes
    return accept["text/html"] > 0 and accept["text/html"] >= accept["application/xml"]


def _page(template: str, **kw) -> str:
    g = gw()
    return render_template(template, service=g.config.service, base=g.url(), **kw)


@bp.route("/")
def index():
    g = gw()
    services = [
        ("TAP 1.1", g.url("tap"), "VO → Table Access Protocol in TOPCAT; pyvo.dal.TAPService"),
        ("SIA 2.0", g.url("sia/query"), "pyvo.dal.SIA2Service"),
        ("SIA 1.0", g.url("sia1"), "Aladin, TOPCAT"),
        ("SODA sync", g.url("soda/sync"), "cutouts of the images"),
        ("DataLink", g.url("datalink/links"), "links of an image or a row"),
    ]
    examples = [
        {"key": k, "name": n, "description": d, "query": q, "tables": t} for k, (n, d, q, t) in g.examples().items()
    ]
    formats = [{"mime": f.mime, "name": (f.aliases[0] if f.aliases else f.extension)} for f in g.formats.formats]
    archives = [(n, a.kind, a.title) for n, a in g.catalogue.archives.items()]
    cones = [t.qualified_name for _, t in g.positional_tables()]
    hips = g.config.web.hips_url
    return _page(
        "query.html",
        hips_url=str(hips).rstrip("/") if hips else None,
        services=services,
        examples=examples,
        formats=formats,
        archives=archives,
        cones=cones,
        maxrec=g.config.service.maxrec_default,
        images=bool(g.image_archives()),
    )


@bp.route("/favicon.ico")
def favicon():
    """The icon browsers ask for on every page, the XML and HTML answers included."""
    return bp.send_static_file("favicon.svg")


@bp.route("/ui/schema.json")
def schema_json():
    """``{"archives": [{"name", "kind", "title", "schemas": [{"name", "tables": [{"name",
    "description", "nrows", "positional", "columns": [{"name", "datatype", "unit", "ucd",
    "description"}]}]}]}]}`` for the schema browser (the same metadata as TAP_SCHEMA)."""
    g = gw()
    out = []
    for aname, arch in g.catalogue.archives.items():
        schemas: dict[str, list] = {}
        for t in (t for a, t in g.catalogue.tables() if a == aname):
            schemas.setdefault(t.schema, []).append(
                {
                    "name": t.qualified_name,
                    "description": t.description,
                    "nrows": t.nrows,
                    "positional": t.positional,
                    "columns": [
                        {
                            "name": c.adql_name,
                            "datatype": c.datatype + (f"[{c.arraysize}]" if c.arraysize else ""),
                            "unit": c.unit,
                            "ucd": c.ucd,
                            "description": c.description,
                        }
                        for c in t.columns
                    ],
                }
            )
        out.append(
            {
                "name": aname,
                "kind": arch.kind,
                "title": arch.title,
                "schemas": [{"name": s, "tables": ts} for s, ts in schemas.items()],
            }
        )
    return jsonify({"archives": out})


@bp.route("/ui/jobs")
def jobs():
    return _page("jobs.html", jobs_url=gw().url("tap/async"))


@bp.route("/ui/tables/<name>")
def table(name):
    g = gw()
    found = g.catalogue.table(name)
    if found is None:
        return error_page(
            404, f"no table {name}; the tables are listed in the schema browser at {g.url()}/", "Not found"
        )
    archive, t = found
    cone = g.cone_table(t.qualified_name) is not None
    referenced_by = [
        (n, tt.qualified_name, fk)
        for n, tt in g.catalogue.tables()
        for fk in tt.foreign_keys
        if fk.target_table.lower() == t.qualified_name.lower()
    ]
    return _page(
        "table.html",
        table=t,
        archive=archive,
        kind=g.catalogue.archives[archive].kind,
        cone=cone,
        referenced_by=referenced_by,
        scs_url=g.url(f"scs/{t.qualified_name}") if cone else None,
        sample_query=f"SELECT TOP 5 * FROM {t.qualified_name}",
    )


@bp.route("/ui/images")
def images():
    """The images page, its position form filled with the centre of the first local image."""
    first = next((r for a in gw().image_archives() for r in a.image_records()), None)
    centre = (round(first["s_ra"], 5), round(first["s_dec"], 5)) if first else ("", "")
    return _page("images.html", centre=centre)


def xml_page(document: str | bytes, title: str, status: int = 200) -> Response:
    """An XML document (VOSI tables or capabilities, a UWS job or job list) as an HTML page
    for a browser: elements as nested lists, ``xlink:href`` and URLs as links.  The XML
    itself stays one click away (``?xml`` is not needed: clients never get this page)."""
    root = ET.fromstring(document if isinstance(document, bytes) else document.encode())
    return Response(_page("xml.html", title=title, root=_node(root)), status=status, mimetype="text/html")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _node(el: ET.Element) -> dict:
    attrs = {
        _local(k): v for k, v in el.attrib.items() if k != XLINK_HREF and _local(k) not in ("type", "schemaLocation")
    }
    text = (el.text or "").strip()
    href = el.attrib.get(XLINK_HREF)
    if href is None and text.startswith(("http://", "https://")):
        href = text
    return {"tag": _local(el.tag), "attrs": attrs, "text": text, "href": href, "children": [_node(c) for c in el]}


def error_page(status: int, message: str, kind: str = "Error") -> Response:
    """A 4xx/5xx error document as a readable page for a browser (the same message as the
    DALI error VOTable; ``QUERY_STATUS=ERROR``, DALI 1.1 §4.2)."""
    return Response(_page("error.html", status=status, message=message, kind=kind), status=status, mimetype="text/html")
