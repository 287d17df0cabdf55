"""Kind ``ivoa``: an upstream TAP 1.1 service (e.g. CADC ``argus``) fronted by the gateway.

ADQL goes through the core's TAP client (:mod:`gateway.tapclient`): metadata import and
snapshot, translation, sync and async execution, per-user login.  This kind adds the
upstream's other services: Simple Cone Search endpoints (``cone_services``, SCS 1.03), SIA 2.0
(``sia2_url``), and DataLink/SODA proxying for the dataset IDs it claims (``id_prefixes``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Literal

import pyarrow as pa
import requests
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from gateway.archive import Cutout, CutoutRequest, Link, Links
from gateway.engine import normalize_batch
from gateway.faults import NotFoundFault, TransientFault, UsageFault
from gateway.rowstream import RowStream, limit_batches
from gateway.schema import Column, Table
from gateway.tapclient import TapArchive, TapConfig, read_votable, table_from_json, table_json
from gateway.uploads import votable_to_arrow
from gateway.upstream import check_complete, iter_body


class ConeService(BaseModel):
    """An upstream Simple Cone Search offered at ``/scs/{table}`` (SCS 1.03)."""

    model_config = ConfigDict(extra="forbid")
    table: str = Field(
        pattern=r"^[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*$", description="gateway name schema.table"
    )
    url: AnyHttpUrl
    description: str | None = None


class IvoaConfig(TapConfig):
    datalink_url: AnyHttpUrl | None = Field(None, description="upstream DataLink links endpoint")
    soda_url: AnyHttpUrl | None = Field(None, description="upstream SODA sync endpoint")
    id_prefixes: list[str] = Field(
        default_factory=list, description="dataset IDs this upstream answers DataLink for, e.g. ivo://cadc.nrc.ca/"
    )
    datalink_access: Literal["gateway", "direct"] = Field(
        "gateway", description="SODA descriptors of DataLink answers point to the gateway or to the upstream"
    )
    max_cutout_bytes: int = Field(500_000_000, ge=1, description="largest SODA answer passed through")
    cone_services: list[ConeService] = Field(default_factory=list, description="upstream SCS endpoints")
    sia2_url: AnyHttpUrl | None = Field(None, description="upstream SIA 2.0 query endpoint")


class IvoaArchive(TapArchive):
    kind = "ivoa"
    Config = IvoaConfig

    def __init__(self, name, config: IvoaConfig, *, base_dir):
        super().__init__(name, config, base_dir=base_dir)
        self.config: IvoaConfig = config
        if config.datalink_url is not None:
            self.capabilities = replace(self.capabilities, datalink_proxy=True)
        self._cones = self.load_cones(self.snapshot.with_suffix(".cones.json") if self.snapshot else None)
        if config.sia2_url is not None:
            self.capabilities = replace(self.capabilities, images=True)

    def upstream_urls(self) -> list:
        c = self.config
        return super().upstream_urls() + [c.datalink_url, c.soda_url, c.sia2_url, *[cs.url for cs in c.cone_services]]

    def load_cones(self, snap: Path | None) -> list[Table]:
        """Metadata of each upstream cone search from its SR=0 metadata query (SCS 1.03 §2),
        kept in ``snap``; falls back to ``snap`` when the upstream is unreachable."""
        if not self.config.cone_services:
            return []
        try:
            out = []
            for cs in self.config.cone_services:
                schema, name = cs.table.split(".")
                body = self._scs_get(str(cs.url), {"RA": "0", "DEC": "0", "SR": "0", "VERB": "3"})
                cols = [_ucd1plus(c) for c in self._scs_parse(body)[0]]
                ids = {c.ucd: c.name for c in cols}
                out.append(
                    Table(
                        schema,
                        name,
                        cols,
                        description=cs.description or f"cone search {cs.url}",
                        ra_column=ids.get("pos.eq.ra;meta.main"),
                        dec_column=ids.get("pos.eq.dec;meta.main"),
                        id_column=ids.get("meta.id;meta.main"),
                    )
                )
            if snap is not None:
                snap.write_text(json.dumps([table_json(t) for t in out], indent=1))
            return out
        except (TransientFault, UsageFault) as e:
            if snap is None or not snap.exists():
                raise ValueError(f"upstream cone search unreadable ({e}) and no metadata snapshot")
            return [table_from_json(d) for d in json.loads(snap.read_text())]

    def cone_tables(self) -> list[Table]:
        return self._cones

    def cone_search(self, table: Table, cone, maxrec: int | None, verb: int) -> RowStream:
        """SCS 1.03 on the upstream cone service behind ``table``; columns by the declared metadata."""
        cs = next((c for c in self.config.cone_services if c.table.lower() == table.qualified_name.lower()), None)
        if cs is None:
            return super().cone_search(table, cone, maxrec, verb)
        body = self._scs_get(
            str(cs.url), {"RA": repr(cone.ra), "DEC": repr(cone.dec), "SR": repr(cone.radius), "VERB": str(verb)}
        )
        cols, arrays = self._scs_parse(body)
        declared = [table.column(c.name) or _ucd1plus(c) for c in cols]
        batch = normalize_batch(pa.RecordBatch.from_arrays(arrays, names=[c.name for c in cols]))
        stream = RowStream(declared, [])
        stream.batches = limit_batches([batch], maxrec, stream)
        return stream

    def _scs_get(self, url: str, params: dict) -> bytes:
        return self.upstream_get(f"upstream cone search {url}", url, params).content

    def _scs_parse(self, body: bytes):
        """SCS 1.03 answer -> (columns, arrays); its error INFO (VOTABLE-level ``Error`` or
        ``QUERY_STATUS=ERROR``) becomes a UsageFault with the upstream's text."""
        vot = read_votable(body, "upstream cone search")
        infos = list(vot.infos) + [i for r in vot.resources for i in r.infos]
        for i in infos:
            if i.name == "Error" or (i.name == "QUERY_STATUS" and i.value == "ERROR"):
                raise UsageFault(f"upstream cone search said: {(i.content or i.value or '').strip()}")
        tables = [t for r in vot.resources for t in r.tables]
        if not tables:
            raise TransientFault("upstream cone search sent a VOTable without a table")
        return votable_to_arrow(tables[0], "upstream cone search")

    # -- SIA 2.0 ------------------------------------------------------------------------------
    def image_search(self, query) -> RowStream:
        """SIA 2.0 (SIA 2.0 §2) forwarded to ``sia2_url``; the answer mapped onto the ObsCore
        columns (STC-S ``s_region`` polygons become DALI polygons)."""
        from gateway.obscore import OBSCORE_COLUMNS, obscore_batch

        r = self.upstream_get("upstream SIA service", str(self.config.sia2_url), _sia2_params(query))
        cols, arrays = self._parse(r.content)
        rows = pa.Table.from_arrays(arrays, names=[c.name for c in cols]).to_pylist()
        for row in rows:
            row["s_region"] = _stcs_polygon(row.get("s_region"))
        stream = RowStream(OBSCORE_COLUMNS, [])
        stream.batches = limit_batches([obscore_batch(rows)], query.maxrec, stream)
        return stream

    # -- DataLink and SODA ----------------------------------------------------------------------
    def claims(self, dataset_id: str) -> bool:
        return any(dataset_id.startswith(p) for p in self.config.id_prefixes)

    def links(self, ids: list[str], context) -> Links:
        """The upstream's DataLink answer for ``ids`` (DataLink 1.1 §3): its ``{links}`` rows
        and its service descriptors (DataLink 1.1 §4), kept as the upstream wrote them; with
        ``datalink_access: gateway`` its SODA sync descriptors point to the gateway's proxy."""
        r = self.upstream_get(
            "upstream DataLink service",
            str(self.config.datalink_url),
            [("ID", i) for i in ids],
            self._session_for(context.actor if context is not None else None),
        )
        check_complete(r.content, "votable", "upstream DataLink service")
        proxy = self.config.datalink_access == "gateway" and self.config.soda_url is not None
        soda_url = f"{context.service_url}/soda/{self.name}/sync" if proxy and context is not None else None
        return upstream_links(r.content, soda_url)

    def cutout(self, request: CutoutRequest, context=None) -> Cutout | None:
        """Forward one SODA sync request (every parameter as the client gave it) to
        ``soda_url`` with the caller's own login; the FITS answer is streamed back, at most
        ``max_cutout_bytes``.  The upstream's 204 is None; its 4xx error text becomes a
        UsageFault (NotFoundFault for 404) saying what the upstream said."""
        if self.config.soda_url is None:
            raise UsageFault(f"archive {self.name} has no SODA service configured")
        session = self._session_for(context.actor if context is not None else None)
        try:
            r = session.get(str(self.config.soda_url), params=request.params, stream=True)
        except requests.RequestException as e:
            raise TransientFault(f"upstream SODA service unreachable ({type(e).__name__})")
        if r.status_code >= 500:
            raise TransientFault(f"upstream SODA service failed: HTTP {r.status_code} {r.text[:300]}")
        if r.status_code == 204:
            return None
        if r.status_code >= 400:
            said = r.text.strip()[:300]
            for label in ("UsageError:", "NotFoundFault:", "Error:"):
                said = said.removeprefix(label).strip()
            fault = NotFoundFault if r.status_code == 404 else UsageFault
            raise fault(f"upstream SODA service said: {said}")
        size = int(r.headers.get("Content-Length") or 0)
        if size > self.config.max_cutout_bytes:
            r.close()
            raise UsageFault(f"the cutout would be {size} bytes; the limit is {self.config.max_cutout_bytes}")
        limit = self.config.max_cutout_bytes
        fits = "fits" in r.headers.get("Content-Type", "").lower()

        def chunks():
            sent = 0
            with r:
                for chunk in iter_body(r, "upstream SODA service", 1 << 16):
                    sent += len(chunk)
                    if sent > limit:  # status already sent: break the response off, never end it as whole
                        raise TransientFault(f"the cutout exceeds the limit of {limit} bytes")
                    yield chunk
            if fits and sent % 2880:  # FITS 4.0 §3.1: whole blocks; a cut file breaks the response off
                raise TransientFault("upstream SODA service broke off its FITS answer")

        return Cutout(chunks(), r.headers.get("Content-Type", "application/octet-stream"))


UCD1 = {
    "ID_MAIN": "meta.id;meta.main",
    "POS_EQ_RA_MAIN": "pos.eq.ra;meta.main",
    "POS_EQ_DEC_MAIN": "pos.eq.dec;meta.main",
}


def _ucd1plus(c: Column) -> Column:
    """SCS 1.03 columns carry UCD1 words; the three it mandates become their UCD1+ equivalents,
    other UCD1 words are dropped (they are not valid UCD1+)."""
    from astropy.io.votable.ucd import check_ucd

    ucd = UCD1.get(c.ucd or "", c.ucd)
    if ucd and not check_ucd(ucd, check_controlled_vocabulary=True):
        ucd = None
    return replace(c, ucd=ucd)


def _sia2_params(q) -> list[tuple[str, str]]:
    """SIA 2.0 query parameters (SIA 2.0 §2.1) of an ImageQuery."""
    out = []
    for shape in q.pos:
        kind = shape[0].upper()
        out.append(("POS", " ".join([kind, *map(repr, shape[1:])])))
    for name, values in (
        ("BAND", q.band),
        ("TIME", q.time),
        ("FOV", q.fov),
        ("SPATRES", q.spatres),
        ("EXPTIME", q.exptime),
        ("TIMERES", q.timeres),
        ("SPECRP", q.specrp),
    ):
        out += [(name, f"{lo!r} {hi!r}") for lo, hi in values]
    for name, values in (
        ("POL", q.pol),
        ("ID", q.id),
        ("COLLECTION", q.collection),
        ("FACILITY", q.facility),
        ("INSTRUMENT", q.instrument),
        ("DPTYPE", q.dptype),
        ("TARGET", q.target),
        ("FORMAT", q.format),
        ("CALIB", [str(c) for c in q.calib]),
    ):
        out += [(name, v) for v in values]
    if q.maxrec is not None:
        out.append(("MAXREC", str(q.maxrec + 1)))
    return out


def _stcs_polygon(value) -> list[float] | None:
    """``POLYGON [ICRS] ra1 dec1 ...`` (STC-S, what many ObsCore services emit) -> DALI polygon."""
    if isinstance(value, list) or value is None:
        return value
    parts = str(value).split()
    if not parts or parts[0].upper() != "POLYGON":
        return None
    nums = []
    for p in parts[1:]:
        try:
            nums.append(float(p))
        except ValueError:
            continue
    return nums if len(nums) >= 6 and len(nums) % 2 == 0 else None


def upstream_links(doc: bytes, soda_url: str | None) -> Links:
    """An upstream DataLink document as :class:`~gateway.archive.Links`: the rows of its
    ``{links}`` table, and its service descriptors (``RESOURCE type="meta"``, DataLink 1.1 §4)
    as VOTable text.  With ``soda_url``, the ``accessURL`` of every SODA sync descriptor is
    pointed at it.  The upstream's QUERY_STATUS=ERROR is a UsageFault with its text."""
    from xml.etree import ElementTree as ET

    try:
        root = ET.fromstring(doc)
    except ET.ParseError as e:
        raise TransientFault(f"upstream DataLink answer is not XML ({e})")
    ns = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""
    q = (lambda t: f"{{{ns}}}{t}") if ns else (lambda t: t)
    if ns:
        ET.register_namespace("", ns)  # the descriptors keep the VOTable namespace, unprefixed
    rows: list[Link] = []
    descriptors = []
    for res in root.iter(q("RESOURCE")):
        if res.get("type") == "meta":
            params = {p.get("name"): p for p in res.iter(q("PARAM")) if p.get("name") in ("standardID", "accessURL")}
            std = params.get("standardID")
            if (
                soda_url
                and std is not None
                and (std.get("value") or "").lower().startswith("ivo://ivoa.net/std/soda#sync")
            ):
                params["accessURL"].set("value", soda_url)
                params["accessURL"].set("arraysize", "*")
            descriptors.append(ET.tostring(res, encoding="unicode") + "\n")
    vot = read_votable(doc, "upstream DataLink service")  # any serialization of the links table
    results = next((r for r in vot.resources if r.type == "results"), None)
    for info in results.infos if results is not None else []:
        if info.name == "QUERY_STATUS" and info.value == "ERROR":
            raise UsageFault(f"upstream DataLink service said: {(info.content or '').strip()}")
    for table in results.tables if results is not None else []:
        names = [f.name.lower() for f in table.fields]
        for rec in table.array:
            cells = {n: _cell(v) for n, v in zip(names, rec)}
            length = cells.get("content_length")
            rows.append(
                Link(
                    cells.get("id") or "",
                    cells.get("semantics") or "",
                    access_url=cells.get("access_url"),
                    service_def=cells.get("service_def"),
                    error_message=cells.get("error_message"),
                    description=cells.get("description"),
                    content_type=cells.get("content_type"),
                    content_length=int(length) if length is not None else None,
                )
            )
    return Links(rows, descriptors)


def _cell(v):
    """A links-table cell as text (or an int for content_length), None for null."""
    import numpy as np

    if v is np.ma.masked or v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.integer):
        return int(v)
    text = str(v).strip()
    return text or None
