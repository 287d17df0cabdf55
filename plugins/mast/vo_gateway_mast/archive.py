"""Kind ``mast``: the MAST catalogs API (``catalogs.mast.stsci.edu/api/v0.1``, docs/upstreams.md §2)
behind the gateway's TAP and SCS.

A scanning archive (``Capabilities`` cone, comparisons, column_selection, order_by, top,
bounded): the gateway's planner (:mod:`gateway.planner`) sends a
:class:`~gateway.archive.ScanRequest` per table reference and evaluates the whole ADQL query
(joins with any archive and uploads included) on the rows; :meth:`MastArchive.scan` writes the
request as REST parameters (§2.1):

* the cone -> ``ra``, ``dec``, ``radius`` (at most ``max_radius`` = 0.5 deg, the API's limit;
  larger cones are refused with the limit);
* ``<``, ``<=``, ``>``, ``>=`` -> ``col.lt|lte|gt|gte``; ``=`` and ``IN`` -> the value(s)
  (repeated values are OR-ed by the API); ``LIKE`` -> ``col.like``;
* the columns -> ``columns=[...]``; the order -> ``sort_by``; the limit -> ``pagesize``, else
  ``page`` loops until the answer ends.

The API's answer is CSV (pyarrow, declared types; the ``-999`` sentinels become nulls).  A
request the API cannot bound (no cone and no id constraint) is refused with a message saying
what to add.  Pan-STARRS requests are POSTed as a JSON body (form POSTs
get HTTP 422 since 2023); HSC requests are GETs.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import requests
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from gateway.archive import Archive, ArchiveConfig, Capabilities, Cutout, CutoutRequest, Link, Links, ScanRequest
from gateway.faults import TransientFault, UsageFault
from gateway.rowstream import RowStream, limit_batches
from gateway.schema import ARROW_TYPES, Table
from gateway.upstream import UpstreamSession, check_complete, origin, read_body, upstream_get

from .metadata import BUNDLED

log = logging.getLogger("gateway.mast")
API_OPS = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
HLA_PREFIX = "ivo://mast.stsci.edu/hla?"
PS1_PREFIX = "ivo://mast.stsci.edu/ps1?"
PS1_BANDS = {"g": (400, 550), "r": (550, 690), "i": (690, 820), "z": (820, 920), "y": (920, 1080)}  # nm
PIXSCALE = {"acs": 0.05, "wfc3": 0.04, "wfpc2": 0.1}  # arcsec/pixel of HLA drizzled images


class MastCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*$", description="gateway schema.table")
    path: str = Field(description="API path below base_url, e.g. hsc/v3/summary/magaper2")


SCHEMA_OF = {
    "hsc/v3": "mast_hsc3",
    "hsc/v2": "mast_hsc2",
    "panstarrs/dr1": "mast_ps1dr1",
    "panstarrs/dr2": "mast_ps1dr2",
}


def _default_catalogs():
    out = []
    for path in BUNDLED:
        prefix = "/".join(path.split("/")[:2])
        rest = path.split("/")[2:]
        out.append(MastCatalog(table=f"{SCHEMA_OF[prefix]}.{'_'.join(rest)}", path=path))
    return out


class MastConfig(ArchiveConfig):
    base_url: AnyHttpUrl = Field("https://catalogs.mast.stsci.edu/api/v0.1", description="catalogs API base")
    timeout: float = Field(60.0, gt=0, description="seconds one read of a MAST answer may wait")
    deadline: float = Field(600.0, gt=0, description="seconds one MAST call may take in all, its whole answer read")
    catalogs: list[MastCatalog] = Field(default_factory=_default_catalogs)
    max_radius: float = Field(0.5, gt=0, le=0.5, description="largest cone the API accepts, deg")
    pagesize: int = Field(50_000, ge=1, description="rows per API page")
    max_rows: int = Field(2_000_000, ge=1, description="most rows fetched for one query before refusing")
    hla_url: AnyHttpUrl | None = Field(
        "https://hla.stsci.edu/cgi-bin/fitscut.cgi",
        description="HLA fitscut service (SIA 2.0 over the images of the detailed table, SODA cutouts, previews)",
    )
    max_cutout_pixels: int = Field(4000, ge=1, description="largest HLA or PS1 cutout side, pixels")
    metadata_cache: Path | None = Field(
        Path("var/mast_metadata.json"),
        description="column metadata read from the "
        "API's /metadata endpoints; refreshed when older than metadata_max_age",
    )
    metadata_max_age: float = Field(7 * 86400, ge=0, description="seconds")
    ps1_images_url: AnyHttpUrl | None = Field(
        "https://ps1images.stsci.edu",
        description="PS1 image service (ps1filenames.py listing, fitscut.cgi cutouts, full files)",
    )
    ps1_types: list[str] = Field(default_factory=lambda: ["stack", "warp"], description="PS1 image types listed")


class MastArchive(Archive):
    kind = "mast"
    Config = MastConfig
    #: a scanning archive (docs/writing_an_archive.md): the catalogs API takes a cone, column
    #: filters, the column list, a sort and a page size, and cannot list a whole catalog
    capabilities = Capabilities(
        cone=True,
        comparisons=True,
        column_selection=True,
        order_by=True,
        top=True,
        bounded=True,
        datalink_proxy=True,
    )

    def __init__(self, name, config: MastConfig, *, base_dir):
        super().__init__(name, config, base_dir=base_dir)
        self.config: MastConfig = config
        self.base = str(config.base_url).rstrip("/")
        origins = {origin(str(u)) for u in (config.base_url, config.hla_url, config.ps1_images_url) if u}
        self.session = UpstreamSession(origins, config.timeout, deadline=config.deadline)
        self._tables = self.load_tables(None)
        self.by_table = {}
        for cat, t in zip(config.catalogs, self._tables):
            self.by_table[t.qualified_name.lower()] = (cat, t)
        self.hla = config.hla_url is not None and self._detailed() is not None
        self.ps1 = str(config.ps1_images_url).rstrip("/") if config.ps1_images_url else None
        if self.hla or self.ps1:
            self.capabilities = replace(self.capabilities, images=True)

    def tables(self) -> list[Table]:
        return self._tables

    def upstream_get(self, what: str, url: str, params, refused: str | None = None):
        return upstream_get(self.session, what, url, params, self.config.timeout, refused)

    def load_tables(self, snap) -> list[Table]:
        """Column metadata per catalog: the API's ``/metadata`` (docs/upstreams.md §2.1), kept in
        ``metadata_cache``; a cache younger than ``metadata_max_age`` is used as it is; when
        MAST is unreachable the cache, else the bundled snapshot (:mod:`.metadata`)."""
        import json
        import time

        cache = (Path(self.base_dir) / self.config.metadata_cache) if self.config.metadata_cache else None
        known = {}
        if cache is not None and cache.exists():
            known = json.loads(cache.read_text())
        fresh = (
            cache is not None and cache.exists() and time.time() - cache.stat().st_mtime < self.config.metadata_max_age
        )
        out, fetched = [], {}
        for cat in self.config.catalogs:
            if cat.path not in BUNDLED:
                raise ValueError(f"no bundled metadata for MAST table {cat.path}")
            schema, name = cat.table.split(".")
            bundled = BUNDLED[cat.path](schema, name)
            meta = known.get(cat.path) if fresh else None
            if meta is None and cache is not None:
                meta = self._fetch_metadata(cat.path) or known.get(cat.path)
                if meta is not None:
                    fetched[cat.path] = meta
            out.append(table_from_metadata(bundled, meta) if meta else bundled)
        if fetched and cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({**known, **fetched}))
        return out

    def _fetch_metadata(self, path: str) -> list | None:
        import requests

        try:
            r = self.session.get(f"{str(self.config.base_url).rstrip('/')}/{path}/metadata", timeout=(5, 20))
            return r.json() if r.ok else None
        except (requests.RequestException, ValueError, TransientFault):
            return None

    @property
    def title(self) -> str:
        return self.config.title or "MAST catalogs (Hubble Source Catalog, Pan-STARRS)"

    # -- scans ----------------------------------------------------------------------------
    def scan(self, request: ScanRequest, context=None) -> RowStream:
        """One MAST catalogs API query (docs/upstreams.md §2.1) for a :class:`ScanRequest`: the cone
        as ``ra``/``dec``/``radius`` (at most ``max_radius``), ``=``/``IN`` as repeated values,
        ``<``, ``<=``, ``>``, ``>=`` as ``col.lt|lte|gt|gte``, LIKE as ``col.like``, the columns
        as ``columns``, ORDER BY as ``sort_by`` and the limit as ``pagesize``; more pages are
        read until the answer ends (more than ``max_rows`` rows is refused).  A request with
        neither a cone nor an id condition is refused (the API cannot scan a whole catalog)."""
        table = request.table
        cat, _ = self.by_table[table.qualified_name.lower()]
        params: dict = {}
        bounded = False
        if request.cone is not None:
            cone = request.cone
            if cone.radius > self.config.max_radius:
                raise UsageFault(
                    f"the MAST catalogs API searches cones of at most {self.config.max_radius} deg "
                    f"radius (asked {cone.radius:g} deg on {table.qualified_name}); split the area "
                    "into smaller cones"
                )
            params.update(ra=cone.ra, dec=cone.dec, radius=cone.radius)
            bounded = True
        for p in request.predicates:
            if p.op in ("=", "IN"):
                params.setdefault(p.column, []).extend(p.value if p.op == "IN" else [p.value])
                bounded |= p.column == table.id_column
            elif p.op in API_OPS:
                params[f"{p.column}.{API_OPS[p.op]}"] = p.value
            elif p.op == "LIKE":
                params[f"{p.column}.like"] = p.value
        if not bounded:
            raise UsageFault(
                f"{table.qualified_name} is too large to scan: add a position, e.g. WHERE 1 = CONTAINS("
                f"POINT('ICRS', {table.ra_column}, {table.dec_column}), CIRCLE('ICRS', ra, dec, r)) with "
                f"r <= {self.config.max_radius} deg, or an id constraint such as {table.id_column} = ..."
            )
        params["columns"] = list(request.columns) or [table.id_column]
        if request.order:
            col, desc = request.order[0]
            params["sort_by"] = col + (".desc" if desc else "")
        actor = context.actor if context is not None else None
        rows = self._fetch(cat, table, params, request.limit, actor)
        stream = RowStream([table.column(n) for n in rows.column_names], [])
        stream.batches = rows.to_batches()
        return stream

    def _detailed(self) -> Table | None:
        return next((t for c, t in self.by_table.values() if c.path == "hsc/v3/detailed"), None)

    def claims(self, dataset_id: str) -> bool:
        """HLA images; HSC MatchIDs are answered at /datalink/{archive}/links only."""
        return (self.hla and dataset_id.startswith(HLA_PREFIX)) or (
            self.ps1 is not None and dataset_id.startswith(PS1_PREFIX)
        )

    def datalink_column(self, table: Table) -> str | None:
        """Hubble Source Catalog summary rows link to their light curves by MatchID."""
        cat = self.by_table.get(table.qualified_name.lower())
        if cat is not None and cat[0].path.startswith("hsc/v3/summary") and self._detailed() is not None:
            return "MatchID"
        return None

    def links(self, ids: list[str], context) -> Links:
        """DataLink 1.1.  An HLA image: ``#this`` (the whole image, fitscut size=ALL),
        ``#preview`` (JPEG) and ``#cutout`` (SODA through the gateway).  An HSC MatchID: the
        match's light curve (all its detailed rows by filter and time) as a TAP query URL,
        semantics ``#auxiliary``."""
        from urllib.parse import urlencode

        detailed = self._detailed()
        rows: list[Link] = []
        for i in ids:
            if self.claims(i) and i.startswith(PS1_PREFIX):
                filename = i[len(PS1_PREFIX) :]
                rows.append(
                    Link(
                        i,
                        access_url=self.ps1 + filename,
                        description=f"PS1 image {filename.rsplit('/', 1)[-1]}",
                        semantics="#this",
                        content_type="image/fits",
                    )
                )
                rows.append(
                    Link(
                        i,
                        service_def="soda",
                        description="SODA cutout through PS1 fitscut",
                        semantics="#cutout",
                        content_type="image/fits",
                    )
                )
                continue
            if self.claims(i):
                name = i[len(HLA_PREFIX) :]
                base = str(self.config.hla_url)
                rows.append(
                    Link(
                        i,
                        access_url=f"{base}?" + urlencode({"red": name, "size": "ALL", "format": "fits"}),
                        description=f"HLA image {name}",
                        semantics="#this",
                        content_type="image/fits",
                    )
                )
                rows.append(
                    Link(
                        i,
                        access_url=f"{base}?"
                        + urlencode(
                            {
                                "red": name,
                                "size": "ALL",
                                "format": "jpeg",
                                "output_size": 1024,
                                "autoscale": 99.5,
                                "asinh": 1,
                            }
                        ),
                        description="JPEG preview",
                        semantics="#preview",
                        content_type="image/jpeg",
                    )
                )
                rows.append(
                    Link(
                        i,
                        service_def="soda",
                        description="SODA cutout through HLA fitscut",
                        semantics="#cutout",
                        content_type="image/fits",
                    )
                )
                continue
            if not i.strip().isdigit() or detailed is None:
                rows.append(Link(i, error_message="NotFoundFault: not an HSC MatchID", semantics="#auxiliary"))
                continue
            q = (
                f"SELECT MatchID, SourceID, StartMJD, Detector, Filter, MagAper2, MagAuto, Flags, ImageName "
                f"FROM {detailed.qualified_name} WHERE MatchID = {int(i)} ORDER BY Filter, StartMJD"
            )
            url = f"{context.service_url}/tap/sync?" + urlencode({"LANG": "ADQL", "QUERY": q})
            rows.append(
                Link(
                    i,
                    access_url=url,
                    description="light curve: every HSC measurement of this match, by filter and time",
                    semantics="#auxiliary",
                    content_type="application/x-votable+xml",
                )
            )
        return Links(rows)

    def _pages(self, cat: MastCatalog, table: Table, params: dict, want: int | None, actor):
        """Yield the pages of one API query (stopping after ``want`` rows), typed, -999 as null."""
        pagesize = min(want, self.config.pagesize) if want else self.config.pagesize
        total, page = 0, 1
        while True:
            batch = self._page(cat, table, {**params, "pagesize": pagesize, "page": page}, actor)
            yield batch
            total += batch.num_rows
            if batch.num_rows < pagesize or (want is not None and total >= want):
                return
            if total >= self.config.max_rows:
                raise UsageFault(
                    f"the query matches more than {self.config.max_rows} rows of {table.qualified_name}; "
                    "narrow it (smaller cone, more constraints)"
                )
            page += 1

    def _fetch(self, cat: MastCatalog, table: Table, params: dict, want: int | None, actor) -> pa.Table:
        """All pages of one API query (or the first ``want`` rows) as one table."""
        return pa.Table.from_batches(list(self._pages(cat, table, params, want, actor)))

    def _page(self, cat: MastCatalog, table: Table, params: dict, actor) -> pa.RecordBatch:
        url = f"{self.base}/{cat.path}.csv"
        session = self.session  # the catalogs API is public: no per-user login
        what = f"MAST catalogs API ({cat.path})"
        try:
            if cat.path.startswith("panstarrs/"):  # JSON body: form POSTs get 422 (astroquery#2709)
                body = {
                    k: (v[0] if isinstance(v, list) and len(v) == 1 and k != "columns" else v)
                    for k, v in params.items()
                }
                if "sort_by" in body:
                    body["sort_by"] = [body["sort_by"]]
                r = session.post(
                    url, data=json.dumps(body), headers={"Content-Type": "application/json", "Accept": "text/csv"}
                )
            else:
                q = [(k, x) for k, v in params.items() if k != "columns" for x in (v if isinstance(v, list) else [v])]
                q.append(("columns", "[" + ",".join(params["columns"]) + "]"))
                r = session.get(url, params=q)
        except Exception as e:  # requests' errors: the upstream is unreachable
            if isinstance(e, (TransientFault, UsageFault)):
                raise
            if isinstance(e, requests.Timeout):
                raise TransientFault(f"{what} did not answer within {self.config.timeout} s")
            raise TransientFault(f"{what} unreachable ({type(e).__name__})")
        if r.status_code >= 500:
            raise TransientFault(f"{what} failed: HTTP {r.status_code} {r.text[:300]}")
        if r.status_code >= 400:
            raise UsageFault(f"{what} refused the request (HTTP {r.status_code}): {r.text.strip()[:300]}")
        return parse_csv(read_body(r, what, "csv"), table, params["columns"])

    def examples(self) -> dict:
        """The STScI HSC notebook's flow (variables in IC 1613, then one light curve)."""
        out = {}
        summary = next((t for c, t in self.by_table.values() if c.path == "hsc/v3/summary/magaper2"), None)
        detailed = next((t for c, t in self.by_table.values() if c.path == "hsc/v3/detailed"), None)
        if summary is not None:
            out["hsc_ic1613_variables"] = (
                "HSC: candidate variables in IC 1613",
                "Matches within 0.5 degrees of IC 1613 with at least 10 ACS F475W and F814W measurements; "
                "the MAD columns measure variability (STScI HSC API notebook).",
                "SELECT MatchID, MatchRA, MatchDec, NumFilters, NumVisits, NumImages, StartMJD, StopMJD,\n"
                "  A_F475W, A_F475W_N, A_F475W_MAD, A_F814W, A_F814W_N, A_F814W_MAD\n"
                f"FROM {summary.qualified_name}\n"
                "WHERE 1 = CONTAINS(POINT('ICRS', MatchRA, MatchDec), CIRCLE('ICRS', 16.2016962, 2.1194959, 0.5))\n"
                "  AND A_F475W_N >= 10 AND A_F814W_N >= 10",
                [summary.qualified_name],
            )
        if detailed is not None:
            out["hsc_light_curve"] = (
                "HSC: the light curve of one match",
                "All ACS/WFC F475W measurements of one match (MatchID from the summary table), in time order.",
                "SELECT MatchID, SourceID, StartMJD, Detector, Filter, MagAper2, Flags, ImageName\n"
                f"FROM {detailed.qualified_name}\n"
                "WHERE MatchID = 80189155 AND Detector = 'ACS/WFC' AND Filter = 'F475W'\n"
                "ORDER BY StartMJD",
                [detailed.qualified_name],
            )
        return out

    # -- HLA images -------------------------------------------------------------------------
    def image_search(self, query) -> RowStream:
        """SIA 2.0 over the HLA images that hold HSC measurements (detailed ``ImageName``: one
        cone query on the detailed table per POS, one ObsCore row per image) and the PS1 stack
        and warp files of the skycell at each POS; the other SIA 2.0 constraints applied
        exactly to the records."""
        from gateway.obscore import OBSCORE_COLUMNS, obscore_batch, record_matches

        detailed = self._detailed()
        if not query.pos:
            raise UsageFault("HST (HLA) and PS1 images are found by position: give POS")
        images: dict[str, dict] = {}
        for shape in query.pos if self.hla else ():
            cat, _ = self.by_table[detailed.qualified_name.lower()]
            ra, dec, r = _circle(shape)
            if r > self.config.max_radius:
                raise UsageFault(f"HLA images are searched within {self.config.max_radius} deg; give a smaller POS")
            params = {
                "ra": ra,
                "dec": dec,
                "radius": r,
                "columns": [
                    "ImageName",
                    "Filter",
                    "Detector",
                    "Instrument",
                    "StartMJD",
                    "StopMJD",
                    "ExposureTime",
                    "WaveLength",
                    "SourceRA",
                    "SourceDec",
                ],
            }
            for row in self._fetch(cat, detailed, params, None, None).to_pylist():
                name = row["ImageName"]
                if not name:
                    continue
                rec = images.setdefault(name, self._hla_record(row))
                rec["_ras"].append(row["SourceRA"])
                rec["_decs"].append(row["SourceDec"])
        records = [
            rec
            for shape in (query.pos if self.ps1 else ())
            for rec in self._ps1_records(shape)
            if record_matches(rec, query)
        ]
        for rec in images.values():
            ras, decs = rec.pop("_ras"), rec.pop("_decs")
            rec["s_ra"] = sum(x for x in ras if x is not None) / max(1, sum(x is not None for x in ras))
            rec["s_dec"] = sum(x for x in decs if x is not None) / max(1, sum(x is not None for x in decs))
            if record_matches(rec, query):
                records.append(rec)
        stream = RowStream(OBSCORE_COLUMNS, [])
        stream.batches = limit_batches([obscore_batch(records)], query.maxrec, stream)
        return stream

    def _ps1_records(self, shape) -> list[dict]:
        """ObsCore records of the PS1 files of the skycell holding the shape's centre
        (``ps1filenames.py``, docs/upstreams.md §2.5): one per band and image type."""
        ra, dec, _ = _circle(shape)
        r = self.upstream_get(
            "PS1 image service",
            self.ps1 + "/cgi-bin/ps1filenames.py",
            {"ra": repr(ra), "dec": repr(dec), "filters": "grizy", "type": ",".join(self.config.ps1_types)},
            refused="the listing",
        )
        text = read_body(r, "PS1 image service", "csv").decode()  # a line table: cut inside a line is an error
        lines = [ln.split() for ln in text.splitlines() if ln.strip()]
        if not lines:
            return []
        head = lines[0]
        out = []
        for values in lines[1:]:
            row = dict(zip(head, values))
            lo, hi = PS1_BANDS.get(row.get("filter"), (None, None))
            mjd = float(row.get("mjd") or 0) or None
            stack = row.get("type", "").startswith("stack")
            out.append(
                {
                    "dataproduct_type": "image",
                    "calib_level": 3 if stack else 2,
                    "obs_collection": "PS1 DR2",
                    "obs_id": row.get("shortname"),
                    "obs_publisher_did": PS1_PREFIX + row["filename"],
                    "access_url": self.ps1 + row["filename"],
                    "access_format": "image/fits",
                    "s_ra": float(row["ra"]),
                    "s_dec": float(row["dec"]),
                    "s_fov": 0.4,
                    "t_min": mjd,
                    "t_max": mjd,
                    "em_min": lo * 1e-9 if lo else None,
                    "em_max": hi * 1e-9 if hi else None,
                    "facility_name": "PS1",
                    "instrument_name": "GPC1",
                    "target_name": row.get("type"),
                    "o_ucd": "phot.flux.density",
                    "pol_xel": 1,
                    "em_xel": 1,
                    "t_xel": 1,
                }
            )
        return out

    def _hla_record(self, row: dict) -> dict:
        from urllib.parse import urlencode

        wl = row.get("WaveLength")
        return {
            "dataproduct_type": "image",
            "calib_level": 2,
            "obs_collection": "HLA",
            "obs_id": row["ImageName"],
            "obs_publisher_did": HLA_PREFIX + row["ImageName"],
            "access_format": "image/fits",
            "access_url": f"{self.config.hla_url}?"
            + urlencode({"red": row["ImageName"], "size": "ALL", "format": "fits"}),
            "t_min": row.get("StartMJD"),
            "t_max": row.get("StopMJD"),
            "t_exptime": row.get("ExposureTime"),
            "em_min": wl * 0.9e-9 if wl else None,
            "em_max": wl * 1.1e-9 if wl else None,
            "facility_name": "HST",
            "instrument_name": row.get("Detector") or row.get("Instrument"),
            "o_ucd": "phot.flux.density",
            "pol_xel": 1,
            "em_xel": 1,
            "t_xel": 1,
            "_ras": [],
            "_decs": [],
        }

    def cutout(self, request: CutoutRequest, context=None) -> Cutout | None:
        """SODA sync (SODA 1.0 §3) as one HLA fitscut call: the circle (or range) becomes
        ``ra, dec, size`` in the image's pixels; sides over ``max_cutout_pixels`` are refused."""
        did = request.id
        if not self.claims(did):
            raise UsageFault(f"ID {did!r} is not an HLA or PS1 image of this service")
        ps1 = did.startswith(PS1_PREFIX)
        name = did[len(PS1_PREFIX if ps1 else HLA_PREFIX) :]
        if request.region is None:
            raise UsageFault("give one region: POS (CIRCLE or RANGE) or CIRCLE")
        ra, dec, r = _circle(request.region)
        scale = 0.25 if ps1 else next((v for k, v in PIXSCALE.items() if f"_{k}_" in name), 0.05)
        size = max(1, int(round(2 * r * 3600 / scale)))
        if size > self.config.max_cutout_pixels:
            raise UsageFault(f"the cutout would be {size} pixels across; the limit is {self.config.max_cutout_pixels}")
        url = self.ps1 + "/cgi-bin/fitscut.cgi" if ps1 else str(self.config.hla_url)
        r = self.upstream_get(
            "PS1 fitscut" if ps1 else "HLA fitscut",
            url,
            {"red": name, "ra": repr(ra), "dec": repr(dec), "size": size, "format": "fits"},
            refused="the cutout",
        )
        check_complete(r.content, "fits", "PS1 fitscut" if ps1 else "HLA fitscut")
        return Cutout([r.content])

    # -- SCS ------------------------------------------------------------------------------
    def availability(self) -> tuple[bool, str]:
        return True, f"{self.name}: MAST catalogs API at {self.base} (checked per query)"


def parse_csv(data: bytes, table: Table, columns: list[str]) -> pa.RecordBatch:
    """API CSV -> one batch with the declared types of ``columns``; numeric -999 sentinels -> null."""
    types = {}
    for n in columns:
        c = table.column(n)
        types[c.name] = ARROW_TYPES.get(c.datatype, pa.string())
    if not data.strip():
        return pa.RecordBatch.from_pylist([], schema=pa.schema(list(types.items())))
    try:
        t = pcsv.read_csv(
            io.BytesIO(data),
            convert_options=pcsv.ConvertOptions(
                column_types=types,
                null_values=["", "null", "NULL"],
                strings_can_be_null=True,
                include_columns=list(types),
            ),
        )
    except pa.ArrowInvalid as e:
        raise TransientFault(f"MAST catalogs API sent unreadable CSV ({str(e)[:200]})")
    arrays = []
    for name in t.column_names:
        a = t.column(name).combine_chunks() if t.column(name).num_chunks else pa.array([], types[name])
        if pa.types.is_floating(a.type) or pa.types.is_signed_integer(a.type):
            a = pc.if_else(pc.equal(a, pa.scalar(-999, a.type)), pa.nulls(len(a), a.type), a)
        arrays.append(a)
    return pa.RecordBatch.from_arrays(arrays, names=t.column_names)


def _circle(shape: tuple) -> tuple[float, float, float]:
    """(ra, dec, radius) of the smallest circle around a SIA/SODA shape (degrees)."""
    import math

    if shape[0] == "circle":
        return shape[1], shape[2], shape[3]
    if shape[0] == "range":
        _, ra1, ra2, dec1, dec2 = shape
        dec = (dec1 + dec2) / 2
        w = (ra2 - ra1) * math.cos(math.radians(dec))
        return (ra1 + ra2) / 2, dec, math.hypot(w, dec2 - dec1) / 2
    ras, decs = shape[1::2], shape[2::2]
    ra, dec = sum(ras) / len(ras), sum(decs) / len(decs)
    c = math.cos(math.radians(dec))
    return ra, dec, max(math.hypot((a - ra) * c, d - dec) for a, d in zip(ras, decs))


def table_from_metadata(bundled: Table, meta: list[dict]) -> Table:
    """The table with the API's column metadata (name, datatype/type, unit, ucd, description;
    ``"NULL"`` placeholders and malformed UCDs cleaned).  UCDs and units MAST does not give are
    kept from the bundled snapshot (positions, ids, magnitudes)."""
    from dataclasses import replace as dc_replace

    from gateway.schema import VOTABLE_DATATYPES, Column

    from .metadata import clean_ucd

    old = {c.name.lower(): c for c in bundled.columns}
    cols = []
    for m in meta:
        name = m.get("name") or m.get("column_name")
        if not name:
            continue
        dt = m.get("datatype") or m.get("type")
        if dt == "float" and str(m.get("size")) != "4":  # HSC "float" is SQL Server's 8-byte float
            dt = "double"
        dt = dt if dt in VOTABLE_DATATYPES else "char"
        prev = old.get(name.lower())
        unit = None if m.get("unit") in (None, "NULL", "") else m["unit"]
        col = Column(
            name,
            dt,
            arraysize="*" if dt == "char" else None,
            unit=unit or (prev.unit if prev else None),
            ucd=clean_ucd(m.get("ucd")) or (prev.ucd if prev else None),
            description=(None if m.get("description") in (None, "NULL") else m["description"])
            or (prev.description if prev else None),
            principal=prev.principal if prev else False,
            indexed=prev.indexed if prev else False,
        )
        cols.append(col)
    ids = {c.name for c in cols}
    keep = all(x in ids for x in (bundled.ra_column, bundled.dec_column, bundled.id_column) if x)
    return dc_replace(bundled, columns=cols) if cols and keep else bundled
