"""DataLink 1.1 documents (DataLink 1.1 §3.2-3.3, §4): the ``{links}`` table and SODA service
descriptors, written as TABLEDATA.  Used by the DataLink endpoint and by archives that
answer DataLink for their own dataset IDs."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from ..archive import Link
from ..schema import Column
from .votable import HEADER, field_xml, info_xml

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


def links_document(links: list[Link], descriptors: str = "") -> str:
    """The DataLink document of ``links`` (:class:`gateway.archive.Link`, one TR each in
    :data:`LINK_COLUMNS` order, None as null); ``descriptors``: service-descriptor RESOURCEs
    appended after the results."""
    out = [
        HEADER,
        '<RESOURCE type="results">\n',
        info_xml("QUERY_STATUS", "OK"),
        info_xml("standardID", "ivo://ivoa.net/std/DataLink#links-1.1"),
        "<TABLE>\n",
    ]
    out += [field_xml(c, id="id_col" if c.name == "ID" else None) for c in LINK_COLUMNS]
    out.append("<DATA><TABLEDATA>\n")
    for lk in links:
        cells = (
            lk.id,
            lk.access_url,
            lk.service_def,
            lk.error_message,
            lk.description,
            lk.semantics,
            lk.content_type,
            None if lk.content_length is None else str(lk.content_length),
        )
        out.append("<TR>" + "".join(f"<TD>{escape(v or '')}</TD>" for v in cells) + "</TR>\n")
    out.append("</TABLEDATA></DATA>\n</TABLE>\n</RESOURCE>\n")
    out.append(descriptors)
    out.append("</VOTABLE>\n")
    return "".join(out)


def soda_descriptor(access_url: str, rid: str = "soda", mode: str = "sync", extra_params: str = "") -> str:
    """A SODA service descriptor (SODA 1.0 §3, DataLink 1.1 §4; ``mode`` ``sync`` or
    ``async``) whose ID parameter takes the ``ID`` column of the links table (``ref="id_col"``);
    ``extra_params``: PARAM elements of an archive's own options, added to ``inputParams``."""
    return (
        f'<RESOURCE type="meta" utype="adhoc:service" ID={quoteattr(rid)} name={quoteattr(rid)}>\n'
        '<PARAM name="standardID" datatype="char" arraysize="*" '
        f'value="ivo://ivoa.net/std/SODA#{mode}-1.0"/>\n'
        f'<PARAM name="accessURL" datatype="char" arraysize="*" value={quoteattr(access_url)}/>\n'
        '<GROUP name="inputParams">\n'
        '<PARAM name="ID" datatype="char" arraysize="*" ucd="meta.id;meta.main" ref="id_col" value=""/>\n'
        '<PARAM name="POS" datatype="char" arraysize="*" ucd="pos.outline;obs" xtype="shape" value="">'
        "<DESCRIPTION>CIRCLE ra dec r | RANGE ra1 ra2 dec1 dec2 | POLYGON ra1 dec1 ... (ICRS deg)</DESCRIPTION></PARAM>\n"
        '<PARAM name="CIRCLE" datatype="double" arraysize="3" xtype="circle" unit="deg" ucd="pos.outline;obs" value=""/>\n'
        '<PARAM name="POLYGON" datatype="double" arraysize="*" xtype="polygon" unit="deg" ucd="pos.outline;obs" value=""/>\n'
        + extra_params
        + "</GROUP>\n</RESOURCE>\n"
    )


def links_descriptor(access_url: str, ref: str) -> str:
    """The DataLink service descriptor (DataLink 1.1 §4) of a query result: its ``ID``
    parameter takes the values of the FIELD whose ID is ``ref``, so clients (pyvo
    ``iter_datalinks``, TOPCAT) find each row's links at ``access_url``."""
    return (
        '<RESOURCE type="meta" utype="adhoc:service" name="datalink">\n'
        '<PARAM name="standardID" datatype="char" arraysize="*" value="ivo://ivoa.net/std/DataLink#links-1.1"/>\n'
        f'<PARAM name="accessURL" datatype="char" arraysize="*" value={quoteattr(access_url)}/>\n'
        '<GROUP name="inputParams">\n<PARAM name="ID" datatype="char" arraysize="*" ucd="meta.id;meta.main" '
        f'ref={quoteattr(ref)} value=""/>\n</GROUP>\n</RESOURCE>\n'
    )
