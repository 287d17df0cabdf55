"""The root HTML page: services, archives, tables and example queries."""

from __future__ import annotations

from urllib.parse import quote
from xml.sax.saxutils import escape

from flask import Blueprint, Response, current_app

bp = Blueprint("root", __name__)


@bp.route("/")
def index():
    gw = current_app.extensions["vo_gateway"]
    svc = gw.config.service
    base = gw.url()
    h = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(svc.title)}</title></head><body>",
        f"<h1>{escape(svc.title)}</h1><p>{escape(svc.description)}</p>",
        "<h2>Services</h2><ul>",
        f"<li>TAP 1.1: <code>{escape(base)}/tap</code> (paste into TOPCAT: VO &#8594; Table Access Protocol)</li>",
        f"<li>SIA 2.0: <code>{escape(base)}/sia/query</code>; SIA 1.0: <code>{escape(base)}/sia1</code></li>",
        f"<li>SODA sync: <code>{escape(base)}/soda/sync</code>; DataLink: <code>{escape(base)}/datalink/links</code></li>",
        "</ul><h2>Archives</h2><ul>",
    ]
    for name, a in gw.catalogue.archives.items():
        h.append(f"<li><b>{escape(name)}</b> ({escape(a.kind)}): {escape(a.title)}</li>")
    h.append(
        "</ul><h2>Tables</h2><table border='1'><tr><th>table</th><th>rows</th><th>description</th><th>cone search</th></tr>"
    )
    for _, t in gw.catalogue.tables():
        scs = (
            f"<a href='{base}/scs/{t.qualified_name}?RA=0&amp;DEC=0&amp;SR=0'>{escape(base)}/scs/{escape(t.qualified_name)}?</a>"
            if t.positional
            else ""
        )
        h.append(
            f"<tr><td>{escape(t.qualified_name)}</td><td>{t.nrows if t.nrows is not None else ''}</td>"
            f"<td>{escape(t.description or '')}</td><td>{scs}</td></tr>"
        )
    h.append("</table><h2>Example queries</h2>")
    for _key, (name, desc, q, _) in gw.examples().items():
        url = f"{base}/tap/sync?LANG=ADQL&amp;QUERY={quote(q)}"
        h.append(f"<h3>{escape(name)}</h3><p>{escape(desc)}</p><pre>{escape(q)}</pre><p><a href='{url}'>run</a></p>")
    h.append("</body></html>")
    return Response("".join(h), mimetype="text/html")
