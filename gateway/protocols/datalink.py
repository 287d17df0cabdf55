"""DataLink 1.1 ``/datalink/links`` (DataLink 1.1 §3): for every image ID a ``#this`` row
(the FITS file) and a ``#cutout`` row pointing at the SODA service descriptor in the same
document; unknown IDs get a ``NotFoundFault`` row.  TABLEDATA, content type
``application/x-votable+xml;content=datalink``."""
from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from flask import Blueprint, Response, current_app

from ..faults import Fault, UsageFault
from ..formats.votable import HEADER, field_xml, info_xml
from ..schema import Column
from .errors import dali_error
from .params import Params
from .soda import find_image

bp = Blueprint("datalink", __name__)
MIME = "application/x-votable+xml;content=datalink"

LINK_COLUMNS = [
    Column("ID", "char", "*", ucd="meta.id;meta.main", description="Input identifier"),
    Column("access_url", "char", "*", ucd="meta.ref.url", description="Link to data or service"),
    Column("service_def", "char", "*", ucd="meta.ref", description="Reference to a service descriptor resource"),
    Column("error_message", "char", "*", ucd="meta.code.error", description="Error if an access_url cannot be created"),
    Column("description", "char", "*", ucd="meta.note", description="Human-readable description of the link"),
    Column("semantics", "char", "*", ucd="meta.code", description="Term from the DataLink vocabulary"),
    Column("content_type", "char", "*", ucd="meta.code.mime", description="MIME type of the linked content"),
    Column("content_length", "long", ucd="phys.size;meta.file", unit="byte", description="Size of the linked content"),
]


def gw():
    return current_app.extensions["vo_gateway"]


@bp.route("/links", methods=["GET", "POST"])
def links():
    p = Params.from_request()
    try:
        fmt = p.get("RESPONSEFORMAT")
        if fmt and fmt.split(";")[0].strip().lower() not in ("votable", "application/x-votable+xml", "text/xml"):
            raise UsageFault(f"unsupported RESPONSEFORMAT {fmt!r}; DataLink answers VOTable")
        ids = p.getlist("ID")
        upstream = {a.name: a for a in gw().catalogue.archives.values()
                    for i in ids if a.capabilities.datalink_proxy and a.claims(i)}
        if upstream:
            if len(upstream) > 1 or not all(next(iter(upstream.values())).claims(i) for i in ids):
                raise UsageFault("these IDs belong to different archives; ask for each archive's IDs separately")
            a = next(iter(upstream.values()))
            for i in ids:
                gw().queries._allowed(gw().actor(), "datalink", a.name, i)
            return Response(a.datalink(ids, gw().actor(), gw().url(f"soda/{a.name}/sync")), content_type=MIME)
    except Fault as f:
        return dali_error(f, label=True)
    rows = []
    for i in ids:
        try:
            archive, rec = find_image(i)
        except Fault as f:
            rows.append([i, "", "", f"{f.label}: {f}", "", "#this", "", ""])
            continue
        url = gw().url(f"data/{archive.name}/{rec['obs_id']}.fits")
        rows.append([i, url, "", "", f"full image {rec['obs_id']}", "#this", "image/fits",
                     str(rec["access_estsize"] * 1024)])
        rows.append([i, "", "soda", "", "SODA cutout of this image (POS, CIRCLE or POLYGON)", "#cutout",
                     "image/fits", ""])
    out = [HEADER, '<RESOURCE type="results">\n', info_xml("QUERY_STATUS", "OK"),
           info_xml("standardID", "ivo://ivoa.net/std/DataLink#links-1.1"), "<TABLE>\n"]
    out += [field_xml(c, id="id_col" if c.name == "ID" else None) for c in LINK_COLUMNS]
    out.append("<DATA><TABLEDATA>\n")
    for r in rows:
        out.append("<TR>" + "".join(f"<TD>{escape(v)}</TD>" for v in r) + "</TR>\n")
    out.append("</TABLEDATA></DATA>\n</TABLE>\n</RESOURCE>\n")
    out.append(soda_descriptor())
    out.append("</VOTABLE>\n")
    return Response("".join(out), content_type=MIME)


def soda_descriptor() -> str:
    return ('<RESOURCE type="meta" utype="adhoc:service" ID="soda" name="soda">\n'
            '<PARAM name="standardID" datatype="char" arraysize="*" value="ivo://ivoa.net/std/SODA#sync-1.0"/>\n'
            f'<PARAM name="accessURL" datatype="char" arraysize="*" value={quoteattr(gw().url("soda/sync"))}/>\n'
            '<GROUP name="inputParams">\n'
            '<PARAM name="ID" datatype="char" arraysize="*" ucd="meta.id;meta.main" ref="id_col" value=""/>\n'
            '<PARAM name="POS" datatype="char" arraysize="*" ucd="pos.outline;obs" xtype="shape" value="">'
            "<DESCRIPTION>CIRCLE ra dec r | RANGE ra1 ra2 dec1 dec2 | POLYGON ra1 dec1 ... (ICRS deg)</DESCRIPTION></PARAM>\n"
            '<PARAM name="CIRCLE" datatype="double" arraysize="3" xtype="circle" unit="deg" ucd="pos.outline;obs" value=""/>\n'
            '<PARAM name="POLYGON" datatype="double" arraysize="*" xtype="polygon" unit="deg" ucd="pos.outline;obs" value=""/>\n'
            "</GROUP>\n</RESOURCE>\n")
