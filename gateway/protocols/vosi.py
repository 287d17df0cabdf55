"""VOSI 1.1 documents: capabilities (with TAPRegExt 1.0), availability and tables
(VOSI 1.1 §3; TAPRegExt 1.0 §2; VODataService 1.1 tableset)."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from ..adql.validate import GEOMETRY_ORDER
from ..catalogue import Catalogue
from ..schema import Table

XSI = "http://www.w3.org/2001/XMLSchema-instance"
CAP_NS = (
    'xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
    f'xmlns:xsi="{XSI}" xmlns:vr="http://www.ivoa.net/xml/VOResource/v1.0" '
    'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0"'
)
FEATURES = "ivo://ivoa.net/std/TAPRegExt#features-"
# ADQL 2.1 §4 defines adql-conditional with the lower-case IVOID; STILTS 3.4.7 compares feature
# keys case-sensitively and knows the TAPRegExt 1.0 spelling of the others.
FEATURES_21 = "ivo://ivoa.net/std/tapregext#features-"


def vosi_capability(std: str, url: str) -> str:
    return (
        f'<capability standardID="{std}"><interface xsi:type="vs:ParamHTTP">'
        f'<accessURL use="full">{escape(url)}</accessURL></interface></capability>\n'
    )


def capabilities_document(caps: list[str]) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<vosi:capabilities {CAP_NS}>\n'
        + "".join(caps)
        + "</vosi:capabilities>\n"
    )


def tap_capability(
    base: str,
    formats,
    service,
    geometry: set[str],
    jobs=None,
    uploads=None,
    udfs=(),
    set_operations: bool = False,
    common_tables: bool = False,
) -> str:
    """The TAP capability with TAPRegExt 1.0 content (TAPRegExt §2: language, outputFormat,
    uploadMethod, retentionPeriod, executionDuration, outputLimit, uploadLimit, in that order).
    ``udfs``: the archives' :class:`~gateway.archive.Udf` forms (TAPRegExt §2.3, ``features-udf``)."""
    feats: list[tuple[str, list[str]]] = []
    geo = [g for g in GEOMETRY_ORDER if g in geometry]
    if geo:
        feats.append(("adqlgeo", geo))
    feats += [
        ("adql-string", ["LOWER", "UPPER", "ILIKE"]),
        ("adql-type", ["CAST"]),
        ("adql-conditional", ["COALESCE"]),
        ("adql-offset", ["OFFSET"]),
    ]
    feats.append(("adql-unit", ["IN_UNIT"]))  # evaluated by the gateway for every archive (a factor)
    if set_operations:  # ADQL 2.1 §2.2.4 (TAPRegExt 1.1 lower-case IVOID)
        feats.append(("adql-sets", ["UNION", "EXCEPT", "INTERSECT"]))
    if common_tables:  # ADQL 2.1 §2.2.5
        feats.append(("adql-common-table", ["WITH"]))
    lang = (
        "<language><name>ADQL</name>"
        '<version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>'
        '<version ivo-id="ivo://ivoa.net/std/ADQL#v2.1">2.1</version>'
        "<description>ADQL 2.1; geometry in ICRS degrees</description>"
    )
    for group, forms in feats:
        prefix = (
            FEATURES_21 if group in ("adql-conditional", "adql-sets", "adql-common-table", "adql-unit") else FEATURES
        )
        lang += f'<languageFeatures type="{prefix}{group}">'
        lang += "".join(f"<feature><form>{f}</form></feature>" for f in forms)
        lang += "</languageFeatures>"
    if udfs:
        lang += f'<languageFeatures type="{FEATURES}udf">'
        lang += "".join(
            f"<feature><form>{escape(u.form)}</form><description>{escape(u.description)}</description></feature>"
            for u in udfs
        )
        lang += "</languageFeatures>"
    lang += "</language>"
    outs = ""
    for f in formats:
        ivo = f' ivo-id="{f.ivo_id}"' if f.ivo_id else ""
        outs += f"<outputFormat{ivo}><mime>{escape(f.mime)}</mime>"
        outs += "".join(f"<alias>{escape(a)}</alias>" for a in f.aliases if "/" not in a)
        outs += "</outputFormat>"
    limits = ""
    if uploads is not None:
        outs += (
            '<uploadMethod ivo-id="ivo://ivoa.net/std/TAPRegExt#upload-inline"/>'
            '<uploadMethod ivo-id="ivo://ivoa.net/std/TAPRegExt#upload-http"/>'
            '<uploadMethod ivo-id="ivo://ivoa.net/std/TAPRegExt#upload-https"/>'
        )
    if jobs is not None:
        limits += (
            f"<retentionPeriod><default>{jobs.destruction_default}</default>"
            f"<hard>{jobs.destruction_max}</hard></retentionPeriod>"
            f"<executionDuration><default>{jobs.execution_duration_default}</default>"
            f"<hard>{jobs.execution_duration_max}</hard></executionDuration>"
        )
    limits += (
        f'<outputLimit><default unit="row">{service.maxrec_default}</default>'
        f'<hard unit="row">{service.maxrec_hard}</hard></outputLimit>'
    )
    if uploads is not None:
        limits += (
            f'<uploadLimit><default unit="byte">{uploads.max_bytes}</default>'
            f'<hard unit="byte">{uploads.max_bytes}</hard></uploadLimit>'
        )
    return (
        f'<capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">'
        f'<interface xsi:type="vs:ParamHTTP" role="std" version="1.1"><accessURL use="base">{escape(base)}</accessURL>'
        f"</interface>{lang}{outs}{limits}</capability>\n"
    )


def availability_document(available: bool, notes: list[str]) -> str:
    body = "".join(f"<vosi:note>{escape(n)}</vosi:note>" for n in notes)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">'
        f"<vosi:available>{'true' if available else 'false'}</vosi:available>{body}</vosi:availability>\n"
    )


def table_xml(t: Table, detail: bool = True, root: bool = False) -> str:
    tag = "vosi:table" if root else "table"
    ns = (
        (
            ' xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
            f'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" xmlns:xsi="{XSI}"'
        )
        if root
        else ""
    )
    out = f'<{tag}{ns} type="{t.table_type}"><name>{escape(t.qualified_name)}</name>'
    if t.description:
        out += f"<description>{escape(t.description)}</description>"
    if t.utype:
        out += f"<utype>{escape(t.utype)}</utype>"
    if detail:
        for c in t.columns:
            out += f"<column><name>{escape(c.adql_name)}</name>"
            if c.description:
                out += f"<description>{escape(c.description)}</description>"
            if c.unit:
                out += f"<unit>{escape(c.unit)}</unit>"
            if c.ucd:
                out += f"<ucd>{escape(c.ucd)}</ucd>"
            if c.utype:
                out += f"<utype>{escape(c.utype)}</utype>"
            attrs = f' arraysize="{c.arraysize}"' if c.arraysize else ""
            if c.xtype:
                attrs += f" extendedType={quoteattr(c.xtype)}"
            out += f'<dataType xsi:type="vs:VOTableType"{attrs}>{c.datatype}</dataType>'
            for flag, on in (("indexed", c.indexed), ("principal", c.principal), ("std", c.std)):
                if on:
                    out += f"<flag>{flag}</flag>"
            out += "</column>"
        for fk in t.foreign_keys:
            out += f"<foreignKey><targetTable>{escape(fk.target_table)}</targetTable>"
            for fc, tc in zip(fk.from_columns, fk.target_columns):
                out += f"<fkColumn><fromColumn>{escape(fc)}</fromColumn><targetColumn>{escape(tc)}</targetColumn></fkColumn>"
            if fk.description:
                out += f"<description>{escape(fk.description)}</description>"
            out += "</foreignKey>"
    return out + f"</{tag}>"


def tableset_document(cat: Catalogue, detail: bool = True) -> str:
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
        f'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" xmlns:xsi="{XSI}">'
    ]
    for schema, desc in cat.schemas:
        out.append(f"<schema><name>{escape(schema)}</name>")
        if desc:
            out.append(f"<description>{escape(desc)}</description>")
        for _, t in cat.tables():
            if t.schema == schema:
                out.append(table_xml(t, detail))
        out.append("</schema>")
    out.append("</vosi:tableset>\n")
    return "".join(out)
