"""Kind ``hsc``: Subaru HSC-SSP catalogs through the catalog-job API (docs/upstreams.md §1.2), with
each user's own HSC account.

* Translation: :mod:`.translate` (ADQL AST -> HSC SQL).  MAXREC wraps the query in ``LIMIT``.
* Execution, as the official ``hscSspQuery3.py`` does it: JSON POST ``submit`` (credential in
  the body, ``catalog_job`` with ``sql``, ``out_format=csv``, ``include_metainfo_to_body``,
  ``release_version``; ``nomail``, ``skip_syntax_check``, numeric ``clientVersion``), ``status``
  polling with doubling back-off (``done`` -> download, ``error`` -> the HSC message), streamed
  ``download`` parsed with pyarrow into the declared types (``#`` metainfo lines skipped, the
  ``# `` header kept, 64-bit ``object_id`` exact), ``delete`` after download, ``cancel`` when the
  UWS job is aborted or deleted.  A sync query waits ``sync_wait`` seconds, then the HSC job is
  cancelled and the user is told to use /tap/async.
* Credentials: the caller's HTTP Basic credentials (in memory only) become the HSC credential;
  without them an operator's service account (``account``) is used if configured, else the
  answer is 401 with ``WWW-Authenticate: Basic`` so TOPCAT and pyvo ask for them.
* Errors: HSC 401 -> 401 "invalid HSC account or password"; 406 -> the server's SQL error text
  (400); 5xx, timeouts and unreadable answers -> TransientFault with the upstream message.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pcsv
import requests
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from gateway.adql.validate import AdqlQuery, OutputColumn
from gateway.archive import Archive, ArchiveConfig, Capabilities, Cutout, CutoutRequest, Link, Links, Udf
from gateway.config import EnvSecret
from gateway.dali import soda_regions
from gateway.engine import GEOMETRY, normalize_batch, output_columns
from gateway.faults import Fault, MultiValuedFault, TransientFault, UsageFault
from gateway.rowstream import RowStream, limit_batches
from gateway.schema import ARROW_TYPES, Table
from gateway.upstream import ChunkReader, UpstreamSession, check_complete, checked_csv, iter_body, origin

from .metadata import TABLES, rerun_tables
from .translate import to_hsc_sql

log = logging.getLogger("gateway.hsc")


class Account(BaseModel):
    """An operator's service account for single-user installs, from environment variables as
    the official tools use them: ``{username: {env: SSP_PDR_USR}, password: {env: SSP_PDR_PWD}}``
    (internal: ``SSP_IDR_USR``/``SSP_IDR_PWD``)."""

    model_config = ConfigDict(extra="forbid")
    username: EnvSecret | str
    password: EnvSecret


class HscConfig(ArchiveConfig):
    api_url: AnyHttpUrl = Field(
        "https://hsc-release.mtk.nao.ac.jp/datasearch/api/catalog_jobs/",
        description="catalog-job API (public: hsc-release; internal: hscdata)",
    )
    release_version: str = Field("pdr3", description="release_version token (pdr3, dr4, ...)")
    schemas: dict[str, str] = Field(
        default_factory=lambda: {"pdr3_wide": "hsc_pdr3_wide"},
        description="HSC schema (rerun) -> ADQL schema name in the gateway",
    )
    tables: list[Literal[tuple(TABLES)]] | None = Field(
        None,
        description="HSC tables offered per schema (default: all of forced, forced2-5, meas, meas2-4, random, specz)",
    )
    photoz_tables: list[str] = Field(default_factory=lambda: ["photoz_mizuki", "photoz_demp", "photoz_dnnz"])
    account: Account | None = Field(None, description="service account for single-user deployments")
    client_version: float = 20190514.1
    timeout: float = Field(60.0, gt=0, description="seconds one read of an HSC-SSP answer may wait")
    deadline: float = Field(600.0, gt=0, description="seconds one HSC-SSP call may take in all, its whole answer read")
    sync_wait: float = Field(60.0, gt=0, description="seconds a sync query waits for its HSC job")
    poll_initial: float = Field(1.0, gt=0)
    poll_max: float = Field(300.0, gt=0)
    skip_syntax_check: bool = False
    das_url: AnyHttpUrl | None = Field(
        "https://hsc-release.mtk.nao.ac.jp/das_cutout/pdr3",
        description="DAS cutout service (internal: .../das_quarry/dr4)",
    )
    psf_url: AnyHttpUrl | None = Field("https://hsc-release.mtk.nao.ac.jp/psf/pdr3", description="PSF picker")
    filters: list[str] = Field(default_factory=lambda: ["HSC-G", "HSC-R", "HSC-I", "HSC-Z", "HSC-Y"])
    max_cutout_arcmin: float = Field(35.0, gt=0, description="largest cutout side, arcmin")


@dataclass
class HscPlan:
    sql: str
    outputs: list[OutputColumn]
    query: AdqlQuery | None = None  # re-translated with MAXREC + 1 as its own LIMIT


#: the tools' options offered through SODA (downloadCutout.py --tract; downloadPsf.py --tract
#: --patch --centered; docs/upstreams.md §1.5-1.6)
SODA_OPTIONS = (
    '<PARAM name="TRACT" datatype="int" ucd="meta.id;obs.field" value=""><DESCRIPTION>HSC tract of the '
    "cutout or PSF (default: any tract covering the position)</DESCRIPTION></PARAM>\n"
    '<PARAM name="PATCH" datatype="char" arraysize="*" ucd="meta.id;obs.field" value=""><DESCRIPTION>patch '
    "x,y within the tract, for PSFs (default: auto)</DESCRIPTION></PARAM>\n"
    '<PARAM name="CENTERED" datatype="boolean" value=""><DESCRIPTION>PSFs: centre the PSF in its image '
    "(default true)</DESCRIPTION></PARAM>\n"
)


class HscArchive(Archive):
    kind = "hsc"
    Config = HscConfig
    capabilities = Capabilities(adql=True, uploads=True, upload_rows=2000, geometry_functions=GEOMETRY)
    soda_params = SODA_OPTIONS

    def __init__(self, name, config: HscConfig, *, base_dir):
        super().__init__(name, config, base_dir=base_dir)
        self.url = str(config.api_url)
        if not self.url.endswith("/"):
            self.url += "/"
        origins = {origin(str(u)) for u in (self.url, config.das_url, config.psf_url) if u}
        self.session = UpstreamSession(origins, config.timeout, deadline=config.deadline)
        if config.das_url is not None:
            self.capabilities = replace(self.capabilities, datalink_proxy=True, images=True, soda_async=True)
        self.to_hsc = {g.lower(): h for h, g in config.schemas.items()}
        old = config.release_version.startswith(("pdr1", "pdr2"))
        self._tables = []
        for hsc_schema, gschema in config.schemas.items():
            self._tables += rerun_tables(gschema, hsc_schema, not old, config.photoz_tables, config.tables)

    def tables(self) -> list[Table]:
        return self._tables

    def udfs(self) -> list[Udf]:
        """HSC's ``tractSearch`` stored function (docs/upstreams.md §1.3; the seed's "Tract
        selection"): the way to select by tract (the ``tract`` column is computed, and HSC
        says not to filter on it)."""
        what = (
            "1 if object_id lies in tract {} (HSC-SSP stored function tractSearch; object_id >> 42 is "
            "the tract), else 0"
        )
        return [
            Udf("tractSearch", "tractSearch(object_id BIGINT, tract INTEGER) -> INTEGER", what.format("tract")),
            Udf(
                "tractSearch",
                "tractSearch(object_id BIGINT, tract1 INTEGER, tract2 INTEGER) -> INTEGER",
                what.format("tract1 to tract2 (inclusive)"),
            ),
        ]

    @property
    def title(self) -> str:
        return self.config.title or f"Subaru HSC-SSP ({self.config.release_version})"

    def translate(self, query: AdqlQuery) -> HscPlan:
        return HscPlan(to_hsc_sql(query, self.to_hsc, upload_rows=self.capabilities.upload_rows), query.output, query)

    # -- the catalog-job API --------------------------------------------------------------
    def _credential(self, actor) -> dict:
        creds = (actor or {}).get("credentials")
        if creds is not None:
            return {"account_name": creds.username, "password": creds.password}
        if self.config.account is not None:
            user = self.config.account.username
            return {
                "account_name": user if isinstance(user, str) else user.get_secret_value(),
                "password": self.config.account.password.get_secret_value(),
            }
        raise self._challenge(f"{self.title} needs your HSC account: give your user name and password (HTTP Basic)")

    def _challenge(self, message: str) -> Fault:
        """401 with the Basic challenge TOPCAT and pyvo answer with the user's HSC account."""
        return Fault(message, status=401, headers={"WWW-Authenticate": f'Basic realm="{self.title}"'})

    def _post(self, verb: str, credential: dict, stream: bool = False, **body) -> requests.Response:
        payload = {"credential": credential, "clientVersion": self.config.client_version, **body}
        try:
            r = self.session.post(
                self.url + verb, data=json.dumps(payload), headers={"Content-Type": "application/json"}, stream=stream
            )
        except requests.Timeout:
            raise TransientFault(f"HSC-SSP did not answer {verb} within {self.config.timeout} s")
        except requests.RequestException as e:
            raise TransientFault(f"HSC-SSP unreachable ({type(e).__name__})")
        if r.status_code == 401:
            raise self._challenge("invalid HSC account or password")
        if r.status_code == 406:
            raise UsageFault(f"HSC-SSP refused the query: {r.text.strip()[:1000]}")
        if r.status_code >= 400:
            raise TransientFault(f"HSC-SSP {verb} failed: HTTP {r.status_code} {r.text.strip()[:300]}")
        return r

    def result_key(self, native: HscPlan) -> str:
        return native.sql

    def execute(self, native: HscPlan, maxrec: int | None, top: int | None = None, context=None) -> RowStream:
        sql = (
            native.sql
            if maxrec is None or (top is not None and top <= maxrec) or native.query is None
            else to_hsc_sql(native.query, self.to_hsc, limit=maxrec + 1, upload_rows=self.capabilities.upload_rows)
        )
        credential = self._credential(context.actor if context is not None else None)
        job = self._post(
            "submit",
            credential,
            catalog_job={
                "sql": sql,
                "out_format": "csv",
                "include_metainfo_to_body": True,
                "release_version": self.config.release_version,
            },
            nomail=True,
            skip_syntax_check=self.config.skip_syntax_check,
        )
        job_id = _json(job, "submit")["id"]
        cancelled = []

        def cancel():
            if not cancelled:
                cancelled.append(True)
                for verb in ("cancel", "delete"):
                    try:
                        self._post(verb, credential, id=job_id)
                    except Fault:
                        log.warning("could not %s HSC job %s", verb, job_id)

        if context is not None:
            context.on_cancel(cancel)
        sync = context is None or context.job_id is None
        deadline = time.monotonic() + self.config.sync_wait if sync else None
        interval = self.config.poll_initial
        while True:
            if context is not None:
                context.check()
            status = _json(self._post("status", credential, id=job_id), "status")
            if status.get("status") == "done":
                break
            if status.get("status") == "error":
                cancel()
                raise UsageFault(f"HSC-SSP: {status.get('error') or 'the job failed'}")
            if deadline is not None and time.monotonic() + interval > deadline:
                cancel()
                raise Fault(
                    f"the HSC-SSP job did not finish within {self.config.sync_wait:g} s; submit long "
                    "queries to TAP async (/tap/async), which waits for HSC jobs",
                    status=503,
                )
            time.sleep(interval)
            interval = min(interval * 2, self.config.poll_max)
        r = self._post("download", credential, stream=True, id=job_id)

        def finish():
            r.close()
            try:
                self._post("delete", credential, id=job_id)
            except Fault:
                log.warning("could not delete HSC job %s", job_id)

        try:
            batches = stream_result(
                checked_csv(iter_body(r, "HSC-SSP result download"), "HSC-SSP result download"), native.outputs
            )
            first = next(batches, None)  # read before the response starts: early errors set the status
        except Exception:
            finish()
            raise
        columns = output_columns(native.outputs, (first or _empty(native.outputs)).schema)

        def all_batches():
            if first is not None:
                yield first
            yield from batches

        stream = RowStream(columns, [], on_close=finish)
        stream.batches = limit_batches(all_batches(), maxrec, stream)
        return stream

    # -- DAS cutouts and PSFs (docs/upstreams.md §1.5-1.6) ---------------------------------------
    DID = "ivo://hsc.mtk.nao.ac.jp/"
    DAS_TYPES = {"coadd": "coadd", "coadd-bg": "coadd/bg", "warp": "warp"}
    #: HSC filters and the aliases downloadCutout.py/downloadPsf.py accept (their parse_filter)
    FILTERS = {
        "HSC-G": {"g", "W-S-G+"},
        "HSC-R": {"r", "W-S-R+"},
        "HSC-I": {"i", "W-S-I+"},
        "HSC-Z": {"z", "W-S-Z+"},
        "HSC-Y": {"y", "W-S-ZR"},
        "IB0945": {"I945"},
        **{f"NB{n:04d}": {f"N{n}"} for n in (387, 400, 468, 515, 527, 656, 718, 816, 921, 926, 973, 1010)},
    }
    FILTER_NM = {
        "HSC-G": (400, 550),
        "HSC-R": (540, 700),
        "HSC-I": (690, 850),
        "HSC-Z": (850, 930),
        "HSC-Y": (930, 1070),
    }

    def image_search(self, query) -> RowStream:
        """SIA 2.0 (SIA 2.0 §2): per POS, one row per rerun, filter and image type (coadd,
        coadd with background) with ObsCore columns; ``access_url`` is the DAS cutout of the
        POS box (HTTP Basic with the user's HSC account), the DataLink gives the SODA path."""
        from urllib.parse import urlencode

        from gateway.obscore import OBSCORE_COLUMNS, obscore_batch, record_matches
        from gateway.sky import shape_box

        if not query.pos:
            raise UsageFault("HSC-SSP images are cut out around a position: give POS")
        records = []
        for shape in query.pos:
            if shape[0] == "polygon":
                raise UsageFault("HSC images take CIRCLE or RANGE regions")
            ra, dec, w, h = shape_box(shape)
            for rerun in self.config.schemas:
                for kind, das_type in self.DAS_TYPES.items():
                    if kind == "warp":  # several files per cutout: SODA async, not one access_url
                        continue
                    for filt in self.config.filters:
                        lo, hi = self.FILTER_NM.get(filt, (None, None))
                        q = _das_query(rerun, das_type, filt, ra, dec, w, h)
                        rec = {
                            "dataproduct_type": "image",
                            "calib_level": 3,
                            "obs_collection": f"HSC-SSP {rerun}",
                            "obs_id": f"{rerun}-{kind}-{filt}",
                            "obs_publisher_did": f"{self.DID}{rerun}?{kind}/{filt}",
                            "access_url": f"{str(self.config.das_url).rstrip('/')}/cgi-bin/cutout?"
                            + urlencode(_das_get(q)),
                            "access_format": "application/fits",
                            "s_ra": ra,
                            "s_dec": dec,
                            "s_fov": max(w, h),
                            "s_resolution": 0.168,
                            "em_min": lo * 1e-9 if lo else None,
                            "em_max": hi * 1e-9 if hi else None,
                            "facility_name": "Subaru",
                            "instrument_name": "Hyper Suprime-Cam",
                            "target_name": kind,
                            "o_ucd": "phot.flux",
                            "pol_xel": 1,
                            "em_xel": 1,
                            "t_xel": 1,
                        }
                        if record_matches(rec, query):
                            records.append(rec)
        stream = RowStream(OBSCORE_COLUMNS, [])
        stream.batches = limit_batches([obscore_batch(records)], query.maxrec, stream)
        return stream

    def claims(self, dataset_id: str) -> bool:
        """``ivo://hsc.mtk.nao.ac.jp/<rerun>?coadd/<filter>`` (the coadd of a rerun in a filter),
        ``?coadd-bg/`` (with background), ``?warp/`` (the warps of that coadd: several files,
        SODA async) and ``...?psf/<filter>`` (its PSF model), for the configured reruns; the
        filter is checked when the ID is used (:meth:`filters_of`)."""
        rerun, kind, filt = _parse_did(dataset_id, self.DID)
        return rerun in self.config.schemas and kind in (*self.DAS_TYPES, "psf") and bool(filt)

    def filters_of(self, name: str) -> list[str]:
        """The filter an ID names, by its name or a tool alias (``i``, ``N816``); ``all``: every
        configured filter (as the tools expand it).  Raises UsageFault listing the valid names."""
        if name.lower() == "all":
            return list(self.config.filters)
        for physical, aliases in self.FILTERS.items():
            if name == physical or name in aliases:
                return [physical]
        raise UsageFault(f"unknown HSC filter {name!r}; valid: {', '.join(self.FILTERS)} (or all)")

    def links(self, ids: list[str], context) -> Links:
        """DataLink 1.1 for a coadd: ``#cutout`` (SODA through DAS cutout) and ``#auxiliary``
        (the PSF model at a position, a SODA call on the ``?psf/`` ID)."""
        rows: list[Link] = []
        for i in ids:
            if not self.claims(i):
                rows.append(
                    Link(i, error_message="NotFoundFault: not an HSC-SSP coadd of this service", semantics="#cutout")
                )
                continue
            psf = i.replace("?coadd-bg/", "?psf/").replace("?coadd/", "?psf/")
            rows.append(
                Link(
                    i,
                    service_def="soda",
                    description="cutout of the coadd (DAS cutout: image, mask, variance)",
                    semantics="#cutout",
                    content_type="application/fits",
                )
            )
            rows.append(
                Link(
                    psf,
                    service_def="soda",
                    description="PSF model at the centre of POS (PSF picker)",
                    semantics="#auxiliary",
                    content_type="application/fits",
                )
            )
        return Links(rows)

    @staticmethod
    def _options(params: list[tuple[str, str]]) -> dict:
        """The tools' own options, as the SODA service descriptor declares them (``TRACT``;
        for PSFs also ``PATCH`` ``x,y`` and ``CENTERED`` true/false; downloadCutout.py and
        downloadPsf.py ``--tract``/``--patch``/``--centered``).  Raises UsageFault."""
        import re

        opts = {k.upper(): v.strip() for k, v in params if k.upper() in ("TRACT", "PATCH", "CENTERED")}
        if opts.get("TRACT") and not opts["TRACT"].isdigit():
            raise UsageFault(f"TRACT must be a tract number (e.g. 9813), not {opts['TRACT']!r}")
        if opts.get("PATCH") and not re.fullmatch(r"\d+,\d+", opts["PATCH"]):
            raise UsageFault(f"PATCH must be x,y (e.g. 4,4), not {opts['PATCH']!r}")
        if opts.get("CENTERED", "true").lower() not in ("true", "false"):
            raise UsageFault(f"CENTERED must be true or false, not {opts['CENTERED']!r}")
        return opts

    def _cutout_requests(self, did: str, shape: tuple, opts: dict | None = None) -> list[dict]:
        """The DAS cutout or PSF picker parameters for one dataset ID and region (docs/upstreams.md
        §1.5-1.6), one per filter (``all`` names several), each with ``_kind`` (coadd,
        coadd-bg, warp, psf); ``opts`` from :meth:`_options`.  Raises UsageFault for bad input."""
        from gateway.sky import shape_box

        opts = opts or {}
        if not self.claims(did):
            raise UsageFault(
                f"ID {did!r} is not an HSC-SSP coadd, warp or PSF of this service "
                f"(ivo://hsc.mtk.nao.ac.jp/<rerun>?coadd|coadd-bg|warp|psf/<filter>, reruns "
                f"{', '.join(self.config.schemas)})"
            )
        rerun, kind, filt = _parse_did(did, self.DID)
        if shape[0] == "polygon":
            raise UsageFault("HSC cutouts take CIRCLE or RANGE regions")
        ra, dec, w, h = shape_box(shape)
        if max(w, h) * 60 > self.config.max_cutout_arcmin:
            raise UsageFault(
                f"HSC cutouts are at most {self.config.max_cutout_arcmin:g} arcmin across "
                f"(asked {max(w, h) * 60:.3g} arcmin)"
            )
        out = []
        for f in self.filters_of(filt):
            if kind in self.DAS_TYPES:
                q = _das_query(rerun, self.DAS_TYPES[kind], f, ra, dec, w, h)
                q["tract"] = opts.get("TRACT", "")
                out.append({"_kind": kind, **q})
            else:
                out.append(
                    {
                        "_kind": kind,
                        "ra": repr(ra),
                        "dec": repr(dec),
                        "filter": f,
                        "rerun": rerun,
                        "tract": opts.get("TRACT") or "auto",
                        "patch": opts.get("PATCH") or "auto",
                        "type": "coadd",
                        "centered": opts.get("CENTERED", "true").lower(),
                    }
                )
        return out

    def _upstream(self, method: str, url: str, cred: dict, what: str, **kw) -> requests.Response:
        try:
            r = self.session.request(method, url, auth=(cred["account_name"], cred["password"]), **kw)
        except requests.RequestException as e:
            raise TransientFault(f"HSC-SSP {what} service unreachable ({type(e).__name__})")
        if r.status_code == 401:
            raise self._challenge("invalid HSC account or password")
        return r

    def _service_url(self, kind: str) -> str:
        if kind == "psf":
            return f"{str(self.config.psf_url).rstrip('/')}/cgi/getpsf"
        return f"{str(self.config.das_url).rstrip('/')}/cgi-bin/cutout"

    def cutout(self, request: CutoutRequest, context=None) -> Cutout | None:
        """SODA sync: a coadd ID cuts the region out with DAS cutout (``sw``/``sh`` of the
        circle's or range's box); a PSF ID asks the PSF picker at the region's centre.  The
        caller's HSC account is sent as HTTP Basic, as the HSC tools do.  One file per
        request; several (``filter=all``, warps) go to SODA async (``/soda/{name}/async``)."""
        if request.region is None:
            raise UsageFault("give a region: POS (CIRCLE or RANGE) or CIRCLE")
        actor = context.actor if context is not None else None
        reqs = self._cutout_requests(request.id, request.region, self._options(request.params))
        if len(reqs) > 1 or reqs[0]["_kind"] == "warp":
            raise MultiValuedFault(
                f"{request.id} is several files (filter=all, or warps); submit it to "
                f"{self.name}'s SODA async service (/soda/{self.name}/async)"
            )
        q = reqs[0]
        kind = q.pop("_kind")
        if kind == "psf":  # downloadPsf.py always POSTs a bulk=on list, one row for one PSF
            files = list(self._bulk("psf", [q], self._credential(actor), None))
            return Cutout([files[0][1]]) if files else None  # none: SODA 1.0 §3.3, no PSF there
        r = self._upstream("GET", self._service_url(kind), self._credential(actor), kind, params=_das_get(q))
        if r.status_code == 404 and "not found in observed area" in r.text:
            return None  # SODA 1.0 §3.3: the region holds no data
        if r.status_code >= 400:
            raise TransientFault(f"HSC-SSP {kind} service failed: HTTP {r.status_code} {r.text.strip()[:300]}")
        check_complete(r.content, "fits", f"HSC-SSP {kind} service")
        return Cutout([r.content])

    BULK_ROWS = 990  # rows per uploaded list, as downloadCutout.py sends them (docs/upstreams.md §1.5)

    def soda_job(self, params: list[tuple[str, str]], context, job_dir) -> list:
        """SODA async (SODA 1.0 §3.1): one result per (ID, region) combination, in request
        order (SODA-05).  Coadd cutouts go to DAS cutout as bulk list uploads (``#? rerun type
        filter tract ra dec sw sh image mask variance``, 990 rows a request), PSFs to the PSF
        picker's bulk mode (``?bulk=on``, ``#? rerun type filter tract patch ra dec
        centered``); each answer is an uncompressed tar read as it streams, whose member
        names carry the list line number (from 2).  A combination the upstream left out of
        the tar (no data there) gets a ``text/plain`` result ``Error: ...`` naming it."""
        from gateway.uws.job import Result

        ids = [v for k, v in params if k == "ID"]
        shapes = soda_regions(params)
        if not ids or not shapes:
            raise UsageFault("give at least one ID and one region (POS, CIRCLE)")
        import re

        opts = self._options(params)
        combos = [(i, s, q) for i in ids for s in shapes for q in self._cutout_requests(i, s, opts)]
        cred = self._credential(context.actor)
        results: list[list] = [[] for _ in combos]
        for kind in ("coadd", "psf"):
            todo = [k for k, c in enumerate(combos) if (c[2]["_kind"] == "psf") == (kind == "psf")]
            for start in range(0, len(todo), self.BULK_ROWS):
                chunk = todo[start : start + self.BULK_ROWS]
                for line, data, member in self._bulk(kind, [combos[k][2] for k in chunk], cred, context):
                    k = chunk[line - 2]
                    if combos[k][2]["_kind"] == "warp":  # one file per visit (warp-<visit>.fits)
                        visit = re.search(r"warp-(\d+)\.fits$", member)
                        rid = f"warp-{k + 1}-{visit.group(1) if visit else len(results[k]) + 1}"
                    else:
                        rid = f"{kind}-{k + 1}"
                    path = job_dir / f"{rid}.fits"
                    path.write_bytes(data)
                    results[k].append(Result(rid, "application/fits", str(path), len(data)))
        for k, r in enumerate(results):
            if not r:
                did, shape, q = combos[k]
                path = job_dir / f"{q['_kind'].replace('coadd-bg', 'coadd')}-{k + 1}.txt"
                path.write_text(
                    f"Error: HSC-SSP has no data for ID={did} ({q['filter']}) in {_shape_text(shape)} "
                    "(the upstream left this row out of its answer)\n"
                )
                r.append(Result(path.stem, "text/plain", str(path), path.stat().st_size))
        return [x for r in results for x in r]

    def _bulk(self, kind: str, rows: list[dict], cred: dict, context):
        """(list line number, FITS bytes, member name) of one bulk request, as the tar streams in."""
        import re
        import tarfile

        cols = (
            ["rerun", "type", "filter", "tract", "patch", "ra", "dec", "centered"]
            if kind == "psf"
            else ["rerun", "type", "filter", "tract", "ra", "dec", "sw", "sh", "image", "mask", "variance"]
        )
        value = {
            "image": lambda v: "true",
            "mask": lambda v: "true",
            "variance": lambda v: "true",
            "ra": lambda v: f"{float(v):.16e}deg",
            "dec": lambda v: f"{float(v):.16e}deg",
            "sw": lambda v: f"{v:.16e}deg",
            "sh": lambda v: f"{v:.16e}deg",
            "tract": lambda v: v or "any",
            "patch": lambda v: v or "auto",
        }
        text = (
            "#? "
            + " ".join(cols)
            + "\n"
            + "".join(" ".join(value.get(c, str)(r[c]) for c in cols) + "\n" for r in rows)
        )
        r = self._upstream(
            "POST",
            self._service_url(kind),
            cred,
            kind,
            stream=True,
            params={"bulk": "on"} if kind == "psf" else None,
            files={"list": ("coordlist.txt", text.encode(), "text/plain")},
        )
        if context is not None:
            context.on_cancel(r.close)
        if r.status_code >= 400:
            r.close()
            raise TransientFault(f"HSC-SSP {kind} bulk request failed: HTTP {r.status_code} {r.text.strip()[:300]}")
        seen = 0
        body = TailKeeper(iter_body(r, f"HSC-SSP {kind} bulk answer"))
        try:
            with tarfile.open(fileobj=body, mode="r|") as tar:
                for member in tar:
                    if context is not None:
                        context.check()
                    m = re.search(r"(?:^|/)(\d+)-", member.name)
                    if not member.isfile() or m is None or not 2 <= int(m.group(1)) < len(rows) + 2:
                        continue
                    seen += 1
                    yield int(m.group(1)), tar.extractfile(member).read(), member.name
            while body.read(1 << 16):  # the end-of-archive blocks (POSIX: two zero records) must arrive
                pass
            if body.tail.count(0) != len(body.tail) or len(body.tail) < 1024:
                raise tarfile.ReadError("no end-of-archive marker")
        except (tarfile.TarError, OSError, requests.RequestException) as e:
            raise TransientFault(
                f"HSC-SSP {kind} bulk answer broke off after {seen} of {len(rows)} files ({type(e).__name__})"
            )
        finally:
            r.close()

    def availability(self) -> tuple[bool, str]:
        return True, f"{self.name}: HSC-SSP catalog-job API at {self.url} (checked per query)"


class TailKeeper(ChunkReader):
    """A ChunkReader keeping the last 1024 bytes read (a tar's end-of-archive blocks)."""

    tail = b""

    def readinto(self, b):
        n = super().readinto(b)
        self.tail = (self.tail + bytes(b[max(0, n - 1024) : n]))[-1024:]  # the last 1024 bytes, not the chunk
        return n


def _body(chunks) -> tuple[str, ChunkReader]:
    """(header, readable CSV with that header first) of the download stream without its
    ``#`` metainfo lines: the header line (``# a,b,c``) becomes the CSV header (docs/upstreams.md
    §1.2, "Result layout")."""
    data = b""
    while True:
        chunk = next(chunks, b"")
        data += chunk
        lines = data.split(b"\n")
        k = 0
        while k < len(lines) - 1 and lines[k].startswith(b"#"):
            k += 1
        if k < len(lines) - 1 or not chunk:  # a data line (or the end) is in sight
            break
    if k == 0 or not lines[k - 1].startswith(b"#"):
        raise TransientFault("HSC-SSP sent a result without its header line")
    header = lines[k - 1][1:].strip().decode()
    first = (header + "\n").encode() + b"\n".join(lines[k:])
    return header, ChunkReader(itertools.chain([first], chunks))


def stream_result(chunks, outputs: list[OutputColumn]):
    """Parse an HSC CSV download batch by batch (pyarrow, declared types, 64-bit ids exact).
    The columns are taken by position, or by name when the download has more of them than
    were selected (``SELECT *`` also brings the internal ``coord``)."""
    text, body = _body(iter(chunks))
    names = [o.name for o in outputs]
    header = [h.strip() for h in text.split(",")]
    if len(header) == len(names):
        picked = header
    else:
        where = {h.lower(): h for h in header}
        picked = [where.get((o.column.name if o.column is not None else o.name).lower()) for o in outputs]
        if None in picked or len(set(picked)) != len(picked):
            raise TransientFault(
                f"HSC-SSP returned {len(header)} columns ({', '.join(header[:8])}...) for the {len(names)} selected"
            )
    types = {
        h: ARROW_TYPES[o.column.datatype]
        for o, h in zip(outputs, picked)
        if o.column is not None and o.column.datatype in ARROW_TYPES
    }
    try:
        reader = pcsv.open_csv(
            io.BufferedReader(body, 1 << 20),
            read_options=pcsv.ReadOptions(block_size=1 << 20),
            convert_options=pcsv.ConvertOptions(
                column_types=types,
                null_values=["", "NULL", "null"],
                strings_can_be_null=True,
                include_columns=picked,
                true_values=["t", "true", "True"],
                false_values=["f", "false", "False"],
            ),
        )
    except pa.ArrowInvalid as e:
        raise TransientFault(f"HSC-SSP result download is unreadable or broke off ({str(e)[:200]})")
    try:
        for b in reader:
            yield normalize_batch(pa.RecordBatch.from_arrays(b.columns, names=names))
    except (pa.ArrowInvalid, OSError, requests.RequestException) as e:
        raise TransientFault(f"HSC-SSP result download is unreadable or broke off ({str(e)[:200]})")


def _empty(outputs: list[OutputColumn]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array([], ARROW_TYPES.get(o.column.datatype, pa.string()) if o.column else pa.string()) for o in outputs],
        names=[o.name for o in outputs],
    )


def _json(r: requests.Response, verb: str) -> dict:
    """The JSON answer of a catalog-job verb; a cut or non-JSON body is the upstream's failure."""
    try:
        return r.json()
    except ValueError:
        raise TransientFault(f"HSC-SSP {verb} sent an incomplete or non-JSON answer ({r.text[:100]!r})")


def _das_query(rerun: str, das_type: str, filt: str, ra: float, dec: float, w: float, h: float) -> dict:
    """DAS cutout parameters (docs/upstreams.md §1.5) for a ``w`` x ``h`` degree box at (ra, dec):
    image, mask and variance HDUs, any tract.  ``sw``/``sh`` are the box's *semi*-width and
    semi-height in degrees, as ``downloadCutout.py`` defines them (``--sw 10arcsec`` cuts a 20"
    box); :func:`_das_get` writes them for a GET, the bulk list as the tool does."""
    return {
        "ra": repr(ra),
        "dec": repr(dec),
        "sw": w / 2,
        "sh": h / 2,
        "type": das_type,
        "image": "on",
        "mask": "on",
        "variance": "on",
        "filter": filt,
        "tract": "",
        "rerun": rerun,
    }


def _das_get(q: dict) -> dict:
    """The GET form of :func:`_das_query`'s parameters: semi-sizes in arcseconds (``10asec``)."""
    return {**q, "sw": f"{q['sw'] * 3600:.6g}asec", "sh": f"{q['sh'] * 3600:.6g}asec"}


def _shape_text(shape: tuple) -> str:
    """A region as the user wrote it in SODA terms (``CIRCLE ra dec r``, ``RANGE ...``)."""
    return " ".join([shape[0].upper(), *(f"{x:g}" for x in shape[1:])])


def _parse_did(did: str, prefix: str) -> tuple[str, str, str]:
    """(rerun, kind, filter) of ``ivo://hsc.mtk.nao.ac.jp/<rerun>?<kind>/<filter>``."""
    if not did.startswith(prefix) or "?" not in did:
        return "", "", ""
    rerun, _, rest = did[len(prefix) :].partition("?")
    kind, _, filt = rest.partition("/")
    return rerun, kind, filt
