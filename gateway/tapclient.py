"""Forwarding ADQL to an upstream TAP 1.1 service: the TAP client of archives whose upstream
speaks TAP (kinds ``ivoa`` and ``skymapper``), as a base class in the core.

* Metadata: the configured upstream schemas are read from the upstream's VOSI ``/tables``
  (pyvo) at start-up and kept in a JSON snapshot (``snapshot:``), which is used when the
  upstream is unreachable, so the gateway starts offline.  Upstream schema names are exposed
  under the gateway names of ``schemas:`` (``{upstream: gateway}``).
* Translation: the validated ADQL AST with the gateway schema names replaced by the upstream
  ones (an AST transform, never string edits), printed as ADQL 2.1 (:mod:`gateway.adql.dialect`).
* Execution: sync queries go to the upstream ``/sync`` (TAP 1.1 §2.1); inside a UWS job to the
  upstream ``/async`` (pyvo ``AsyncTAPJob``), aborted and deleted upstream when the gateway job
  is cancelled.  MAXREC is forwarded as ``maxrec + 1`` so overflow is exact.  Plain column
  selections stream as CSV (or BINARY2 passed through, :mod:`gateway.binary2`); result FIELDs
  of column references carry the declared (imported) metadata.  TAP_UPLOAD tables are
  forwarded as multipart VOTables (TAP 1.1 §2.5.4).
* Per-user access: a caller's credentials get that caller's own upstream login (a cookie
  scheme, :class:`CookieLogin`), never shared; a service certificate serves callers without.
* Errors: the upstream's ``QUERY_STATUS=ERROR`` text becomes a UsageFault ("upstream TAP
  service ... said: ..."); HTTP 5xx, timeouts and connection failures become TransientFault;
  a truncated answer is an error, never a short result.

Only ``tap_url`` and the configured login URL are contacted (no request parameter names
another host).  Subclasses add their own services and list their URLs in ``upstream_urls``.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

import pyarrow as pa
import requests
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field
from pyvo.dal.exceptions import DALServiceError
from sqlglot import exp

from .adql.dialect import adql_text
from .adql.validate import AdqlQuery, OutputColumn
from .archive import Archive, ArchiveConfig, Capabilities
from .binary2 import Binary2Answer, row_width
from .config import EnvSecret
from .engine import GEOMETRY, normalize_batch, output_columns
from .faults import FatalFault, Fault, TransientFault, UsageFault
from .formats.builtin import VOTABLE as VOTABLE_MIME
from .rowstream import RowStream, limit_batches
from .schema import ARROW_TYPES, VOTABLE_DATATYPES, Column, ForeignKey, Table
from .uploads import votable_to_arrow
from .upstream import (
    AddressPolicy,
    ChunkReader,
    GuardedAdapter,
    UpstreamSession,
    check_complete,
    checked_csv,
    iter_body,
    origin,
    read_body,
    upstream_get,
)

log = logging.getLogger("gateway.tapclient")


class CookieLogin(BaseModel):
    """CADC's login scheme: ``POST login_url`` form ``username``/``password`` with
    ``Accept: text/plain`` answers a token, sent back as cookie ``<cookie>="<token>"``."""

    model_config = ConfigDict(extra="forbid")
    login_url: AnyHttpUrl
    cookie: str = "CADC_SSO"
    token_lifetime: int = Field(3600, ge=60, description="seconds a token is reused for the same credentials")


class TapConfig(ArchiveConfig):
    """The keys of an upstream TAP service (:class:`TapArchive`)."""

    tap_url: AnyHttpUrl | None = Field(None, description="base URL of the upstream TAP service (no trailing /sync)")
    schemas: dict[str, str] = Field(
        default_factory=dict, description="upstream schema -> ADQL schema name in the gateway"
    )
    tables: list[str] | None = Field(None, description="upstream qualified table names to expose (default: all)")
    snapshot: Path | None = Field(
        None,
        description="JSON metadata snapshot (relative to the config file); "
        "written after a successful import, read when the upstream is unreachable",
    )
    timeout: float = Field(60.0, gt=0, description="seconds one read of an upstream answer may wait")
    deadline: float = Field(
        600.0,
        gt=0,
        description="seconds one upstream call may take in all, its whole "
        "answer read (an upstream trickling its answer is cut off here)",
    )
    compression: bool = Field(
        True,
        description="ask the upstream for gzip (Accept-Encoding); false for an "
        "upstream on this host or LAN, where compressing costs more time than it saves",
    )
    poll_wait: int = Field(10, ge=1, le=60, description="UWS WAIT per poll of an upstream async job")
    result_format: Literal["csv", "votable"] = Field(
        "csv",
        description="how plain column selections are fetched: csv is streamed (TAP 1.1 says services should offer it)",
    )
    auth: CookieLogin | None = Field(None, description="per-user upstream login (CADC: cookie CADC_SSO)")
    client_cert: EnvSecret | None = Field(
        None,
        description="service account for single-user deployments: "
        "{env: VAR} naming a PEM file with certificate and key (CADC "
        "tls-with-certificate), used for requests without user credentials",
    )
    ca_bundle: Path | None = Field(None, description="CA certificates to verify the upstream (default: system)")
    max_rows: int | None = Field(
        None,
        ge=1,
        description="the upstream's hard row limit (TAPRegExt outputLimit hard, read from its capabilities "
        "when not set): an answer of that many rows is reported as OVERFLOW, never as complete",
    )
    uploads: bool = Field(
        True,
        description="the upstream accepts TAP_UPLOAD inline tables (TAP 1.1 §2.5.4): "
        "uploads and the planner's multi-cone lists are forwarded to it",
    )


@dataclass
class ForwardPlan:
    adql: str
    outputs: list[OutputColumn]
    uploads: dict = field(default_factory=dict)  # TAP_UPLOAD name -> gateway.uploads.UploadTable, forwarded


class TapArchive(Archive):
    """An archive whose ADQL runs on an upstream TAP service (module docstring); ``kind`` and a
    :class:`TapConfig` subclass as ``Config`` come from the subclass."""

    Config: ClassVar[type[ArchiveConfig]] = TapConfig
    capabilities = Capabilities(adql=True, set_operations=True, common_tables=True, geometry_functions=GEOMETRY)

    def __init__(self, name, config: TapConfig, *, base_dir):
        super().__init__(name, config, base_dir=base_dir)
        self.config: TapConfig = config
        self.url = str(config.tap_url).rstrip("/") if config.tap_url else None
        self.to_upstream = {g.lower(): u for u, g in config.schemas.items()}
        self.origins = {origin(str(u)) for u in [self.url, *self.upstream_urls()] if u}
        self.adapter = GuardedAdapter(AddressPolicy(frozenset(self.origins)), pool_maxsize=16)
        self.session = UpstreamSession(self.origins, config.timeout, self.adapter, deadline=config.deadline)
        if not config.compression:
            self.session.headers["Accept-Encoding"] = "identity"
        if config.ca_bundle is not None:
            self.session.verify = str(Path(base_dir) / config.ca_bundle)
        if config.client_cert is not None:
            self.session.cert = config.client_cert.get_secret_value()
        self._tokens: dict[str, tuple[str, float]] = {}  # owner key -> (token, expiry); memory only
        self._tokens_lock = threading.Lock()
        self.snapshot = (Path(base_dir) / config.snapshot) if config.snapshot else None
        self._tables = self.load_tables(self.snapshot)
        self.binary2_format, self.max_rows = self._upstream_capabilities() if self.url else (None, None)
        if config.result_format != "csv":
            self.binary2_format = None
        self.max_rows = config.max_rows or self.max_rows
        if config.uploads:
            self.capabilities = replace(self.capabilities, uploads=True)
        if self.url is None:
            self.capabilities = replace(self.capabilities, adql=False)

    def upstream_urls(self) -> list:
        """Every upstream URL besides ``tap_url`` the archive may contact (its allowed origins)."""
        return [self.config.auth.login_url if self.config.auth else None]

    def upstream_get(self, what: str, url: str, params, session=None, refused: str | None = None) -> requests.Response:
        """GET ``url`` on an allowed upstream.  Timeouts, connection failures and HTTP 5xx become
        TransientFault naming ``what``; with ``refused`` set, HTTP 4xx becomes a UsageFault
        "``what`` refused ``refused``: <the upstream's text>" (:func:`gateway.upstream.upstream_get`)."""
        return upstream_get(session or self.session, what, url, params, self.config.timeout, refused)

    def load_tables(self, snap: Path | None) -> list[Table]:
        """Import the tables from the upstream; keep them in ``snap``; fall back to ``snap``."""
        if self.url is None:
            return []
        try:
            tables = self._import()
        except (requests.RequestException, OSError, ValueError, DALServiceError) as e:
            if snap is None or not snap.exists():
                raise ValueError(f"upstream {self.url} unreachable ({type(e).__name__}) and no metadata snapshot")
            log.warning("%s: upstream metadata not readable (%s); using snapshot %s", self.name, type(e).__name__, snap)
            return [table_from_json(d) for d in json.loads(snap.read_text())]
        if snap is not None:
            try:  # a read-only snapshot (a shipped one in an image) stays as it is
                snap.parent.mkdir(parents=True, exist_ok=True)
                snap.write_text(json.dumps([table_json(t) for t in tables], indent=1))
            except OSError as e:
                log.warning("%s: snapshot %s not updated (%s)", self.name, snap, type(e).__name__)
        return tables

    # -- metadata -------------------------------------------------------------------------
    def _import(self) -> list[Table]:
        import pyvo

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tableset = pyvo.dal.TAPService(self.url, session=self.session).tables
        wanted = {t.lower() for t in self.config.tables} if self.config.tables else None
        out = []
        for t in tableset:
            schema, _, tname = t.name.rpartition(".")
            if schema not in self.config.schemas or (wanted is not None and t.name.lower() not in wanted):
                continue
            gschema = self.config.schemas[schema]
            cols = [_column(c) for c in t.columns]
            fks = []
            for i, fk in enumerate(getattr(t, "foreignkeys", []) or []):
                ts, _, tt = fk.targettable.rpartition(".")
                if ts in self.config.schemas:
                    fks.append(
                        ForeignKey(
                            f"{gschema}.{tname}.fk{i}",
                            f"{self.config.schemas[ts]}.{tt}",
                            tuple(c.fromcolumn for c in fk.fkcolumns),
                            tuple(c.targetcolumn for c in fk.fkcolumns),
                            fk.description,
                        )
                    )
            ra = next((c.name for c in cols if (c.ucd or "").startswith("pos.eq.ra;meta.main")), None)
            dec = next((c.name for c in cols if (c.ucd or "").startswith("pos.eq.dec;meta.main")), None)
            idc = next((c.name for c in cols if (c.ucd or "") == "meta.id;meta.main"), None)
            out.append(
                Table(
                    gschema,
                    tname,
                    cols,
                    description=t.description,
                    utype=t.utype,
                    table_type=t.type or "table",
                    ra_column=ra,
                    dec_column=dec,
                    id_column=idc,
                    foreign_keys=fks,
                )
            )
        if not out:
            raise ValueError(f"none of the schemas {sorted(self.config.schemas)} found upstream")
        return out

    def tables(self) -> list[Table]:
        return self._tables

    @property
    def title(self) -> str:
        return self.config.title or f"{self.name} (upstream TAP {self.url})"

    # -- per-user access ----------------------------------------------------------------------
    def _session_for(self, actor) -> UpstreamSession:
        """The shared anonymous session, or for a caller with credentials a session carrying
        that caller's own login cookie (:class:`CookieLogin`); tokens are cached in memory per owner
        key, never shared between users, never stored."""
        creds = (actor or {}).get("credentials")
        if self.config.auth is None or creds is None:
            return self.session
        key = actor["key"]
        with self._tokens_lock:
            token, expiry = self._tokens.get(key, (None, 0.0))
        if token is None or expiry < time.monotonic():
            token = self._login(creds)
            with self._tokens_lock:
                self._tokens[key] = (token, time.monotonic() + self.config.auth.token_lifetime)
        s = UpstreamSession(self.origins, self.config.timeout, self.adapter, deadline=self.config.deadline)
        s.verify = self.session.verify  # a user's session never carries the service certificate
        s.headers["Accept-Encoding"] = self.session.headers["Accept-Encoding"]
        s.headers["Cookie"] = f'{self.config.auth.cookie}="{token}"'
        return s

    def _login(self, creds) -> str:
        try:
            r = self.session.post(
                str(cast(CookieLogin, self.config.auth).login_url),
                headers={"Accept": "text/plain"},
                data={"username": creds.username, "password": creds.password},
            )
        except requests.RequestException as e:
            raise TransientFault(f"upstream login service unreachable ({type(e).__name__})")
        if r.status_code in (401, 403):
            raise Fault(f"invalid {self.title} account or password (the upstream login refused them)", status=401)
        if not r.ok or not r.text.strip():
            raise TransientFault(f"upstream login failed: HTTP {r.status_code}")
        return r.text.strip()

    # -- queries --------------------------------------------------------------------------
    def translate(self, query: AdqlQuery) -> ForwardPlan:
        tree = query.ast.copy()
        written: dict[
            str, tuple[exp.Identifier, Any]
        ] = {}  # how FROM names each source: its alias, or schema.table as the user wrote it
        for node in tree.find_all(exp.Table, exp.Subquery, exp.CTE):
            db = node.args.get("db")
            if db is not None and db.name.lower() in self.to_upstream:
                db = exp.to_identifier(self.to_upstream[db.name.lower()])
                node.set("db", db)
            alias = node.args.get("alias")
            exposed: tuple[exp.Identifier, Any]
            if alias is not None and isinstance(alias.this, exp.Identifier):
                exposed = (alias.this, None)
            elif isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
                exposed = (node.this, db)
            else:
                continue
            written.setdefault(exposed[0].name, exposed)
            written.setdefault(exposed[0].name.lower(), exposed)  # FROM UP.GAIA: the analyzer's "gaia"
        for col in tree.find_all(exp.Column):
            # the analyzer qualifies every column with its source as a delimited identifier
            # ("main"."ra"); strict services (DaCHS: "table '"main"' could not be located", and
            # for a plain main too) get the qualifier FROM exposes: the alias, or schema.table
            qual = col.args.get("table")
            source = None if qual is None else written.get(qual.name) or written.get(qual.name.lower())
            if source is not None:
                ident, db = source
                col.set("table", ident.copy())
                col.set("db", db.copy() if db is not None else None)
        return ForwardPlan(adql_text(tree), query.output, dict(query.uploads or {}))

    def result_key(self, native) -> str | None:
        return native.adql if isinstance(native, ForwardPlan) else None

    def execute(self, native: ForwardPlan, maxrec: int | None, top: int | None = None, context=None) -> RowStream:
        """Forward the query.  When every output column is a declared scalar column the answer
        is asked as CSV and streamed batch by batch (pyarrow, declared types); otherwise, or when
        the upstream answers VOTable anyway, the VOTable is parsed whole."""
        params: dict[str, Any] = {"LANG": "ADQL", "QUERY": native.adql}
        if maxrec is not None:
            params["MAXREC"] = str(maxrec + 1)
        cap = self.max_rows
        capped = cap is not None and (maxrec is None or maxrec + 1 > cap)
        if capped:
            params["MAXREC"] = str(cap)  # the upstream stops there: an answer that long may be cut
        stream = self._forward(native, params, maxrec, context)
        return _overflow_at(stream, cast(int, cap)) if capped else stream

    def _forward(self, native: ForwardPlan, params: dict, maxrec: int | None, context) -> RowStream:
        declared = [o.column for o in native.outputs]
        binary2 = (
            context is not None
            and context.response_format == VOTABLE_MIME
            and self.binary2_format is not None
            and row_width(declared) is not None
        )
        csv_types = None if binary2 else self._csv_types(native.outputs)
        if binary2:
            params["RESPONSEFORMAT"] = self.binary2_format
        elif csv_types is not None:
            params["RESPONSEFORMAT"] = "csv"
        session = self._session_for(context.actor if context is not None else None)
        async_job = context is not None and context.job_id is not None
        r = (
            self._run_async(session, params, context, native.uploads)
            if async_job
            else self._run_sync(session, params, native.uploads)
        )
        if csv_types is not None and r.headers.get("Content-Type", "").startswith("text/csv"):
            return self._csv_stream(r, native, csv_types, maxrec)
        if binary2 and _is_votable(r):
            # binary2 holds only when every output is a declared column (row_width)
            answer = Binary2Answer(
                self._body_chunks(r), cast(list[Column], declared), f"upstream TAP service {self.url}"
            )
            if answer.ok:
                return self._binary2_stream(r, answer, native, maxrec)
            body = answer.whole()
        else:
            body = read_body(r, f"upstream TAP service {self.url}")
        cols, arrays = self._parse(body)
        if len(cols) != len(native.outputs):
            raise FatalFault(f"upstream {self.url} returned {len(cols)} columns for {len(native.outputs)} selected")
        batch = normalize_batch(pa.RecordBatch.from_arrays(arrays, names=[o.name for o in native.outputs]))
        stream = RowStream(output_columns(native.outputs, batch.schema), [])
        stream.batches = limit_batches([batch], maxrec, stream)
        return stream

    def _binary2_stream(self, r, answer: Binary2Answer, native: ForwardPlan, maxrec: int | None) -> RowStream:
        """The upstream's BINARY2 answer whose FIELDs have the declared layout: its rows passed
        on to a BINARY2 writer (``RowStream.encoded``), or parsed whole for any other writer."""

        def overflow():
            stream.overflow = True

        def counted(n):
            stream.rows_passed = n

        def batches():
            cols, arrays = self._parse(answer.whole())
            batch = normalize_batch(pa.RecordBatch.from_arrays(arrays, names=[o.name for o in native.outputs]))
            yield from limit_batches([batch], maxrec, stream)

        stream = RowStream(cast(list[Column], [o.column for o in native.outputs]), [], on_close=r.close)
        stream.batches = batches()
        stream.encoded["binary2"] = lambda: answer.rows(maxrec, overflow, counted)
        return stream

    def _body_chunks(self, r) -> Iterator[bytes]:
        """The response body in chunks as they arrive (:func:`gateway.upstream.iter_body`)."""
        return iter_body(r, f"upstream TAP service {self.url}")

    def _upstream_capabilities(self) -> tuple[str | None, int | None]:
        """From the upstream's TAPRegExt capabilities (TAPRegExt 1.0 §2.5, §2.7): the
        RESPONSEFORMAT value for VOTable BINARY2 (ivo-id ``#output-votable-binary2``) and the
        hard output limit in rows; None for what it does not say or when they are unreadable."""
        import pyvo

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                caps = pyvo.dal.TAPService(self.url, session=self.session).capabilities
        except Exception as e:  # noqa: BLE001 - without capabilities the gateway fetches CSV
            log.info("%s: upstream capabilities not readable (%s); BINARY2 not asked", self.name, type(e).__name__)
            return None, None
        binary2, hard = None, None
        for cap in caps:
            for f in getattr(cap, "outputformats", None) or []:
                if binary2 is None and (
                    (f.ivo_id or "").lower().endswith("#output-votable-binary2")
                    or "serialization=binary2" in (f.mime or "").lower().replace(" ", "")
                ):
                    binary2 = f.mime
            limit = getattr(cap, "outputlimit", None)
            h = getattr(limit, "hard", None) if limit is not None else None
            if h is not None and (getattr(h, "unit", None) or "row") in ("row", "rows"):
                try:
                    hard = int(h.content)
                except (TypeError, ValueError):
                    pass
        return binary2, hard

    def _csv_types(self, outputs: list[OutputColumn]) -> dict | None:
        if self.config.result_format != "csv":
            return None
        types = {}
        for o in outputs:
            c = o.column
            if c is None or c.datatype not in ARROW_TYPES or (c.arraysize and c.datatype != "char") or c.xtype:
                return None
            types[o.name] = ARROW_TYPES[c.datatype]
        return types

    def _csv_stream(self, r, native: ForwardPlan, types: dict, maxrec: int | None) -> RowStream:
        """The upstream's CSV answer as a stream.  Its header line is read now (the column
        count checked); the rows are parsed batch by batch with pyarrow into the declared
        types when a writer wants batches, or passed on as the upstream wrote them when the
        client asked CSV too (``RowStream.encoded``: no second encoding), cut after
        ``maxrec`` records (quote-aware) with OVERFLOW when the upstream had more."""
        import csv

        import numpy as np
        import pyarrow.csv as pcsv

        body_chunks = checked_csv(self._body_chunks(r), f"upstream TAP service {self.url}")
        head = b""
        while b"\n" not in head:
            chunk = next(body_chunks, None)
            if chunk is None:
                break
            head += chunk
        line, _, rest = head.partition(b"\n")
        header = next(csv.reader([line.decode("utf-8", "replace").rstrip("\r")]), [])
        names = [o.name for o in native.outputs]
        if len(header) != len(names):
            r.close()
            raise FatalFault(f"upstream {self.url} returned {len(header)} columns for {len(names)} selected")

        def chunks():
            if rest:
                yield rest
            yield from body_chunks

        def batches():
            body = io.BufferedReader(ChunkReader(chunks()), 1 << 20)
            try:
                reader = pcsv.open_csv(
                    body,
                    read_options=pcsv.ReadOptions(block_size=1 << 20, column_names=header),
                    convert_options=pcsv.ConvertOptions(
                        column_types=dict(zip(header, types.values())),
                        null_values=[""],
                        strings_can_be_null=True,
                        true_values=["T", "true", "True", "1"],
                        false_values=["F", "false", "False", "0"],
                    ),
                )
                for b in reader:
                    yield normalize_batch(pa.RecordBatch.from_arrays(b.columns, names=names))
            except (pa.ArrowInvalid, OSError, requests.RequestException) as e:
                raise FatalFault(f"upstream {self.url} sent unreadable CSV ({str(e)[:200]})")

        def csv_body():
            rows, quoted = 0, 0
            pending = chunks()
            try:
                for chunk in pending:
                    if not quoted and b'"' not in chunk:  # no quoted field: every line end ends a record
                        n = chunk.count(b"\n")
                        if maxrec is None or rows + n < maxrec:
                            rows += n
                            yield chunk
                            continue
                    a = np.frombuffer(chunk, np.uint8)
                    parity = (np.cumsum(a == 34) + quoted) & 1
                    ends = np.flatnonzero((a == 10) & (parity == 0))
                    if maxrec is not None and rows + len(ends) >= maxrec:
                        cut = int(ends[maxrec - rows - 1]) + 1 if maxrec > rows else 0
                        if chunk[cut:].strip() or any(c.strip() for c in pending):
                            stream.overflow = True
                        rows = maxrec
                        if cut:
                            yield chunk[:cut]
                        return
                    rows += len(ends)
                    quoted = int(parity[-1]) if len(a) else quoted
                    yield chunk
            except (OSError, requests.RequestException) as e:
                raise TransientFault(f"upstream {self.url} broke off its CSV answer ({type(e).__name__})")
            finally:
                stream.rows_passed = rows

        stream = RowStream(cast(list[Column], [o.column for o in native.outputs]), [], on_close=r.close)
        stream.batches = limit_batches(batches(), maxrec, stream)
        stream.encoded["csv"] = csv_body
        return stream

    def _run_sync(self, session, params: dict, uploads: dict | None = None):
        files = None
        if uploads:  # TAP 1.1 §2.5.4: UPLOAD=name,param:part with the VOTable as a multipart part
            params = {**params, "UPLOAD": ";".join(f"{n},param:{n}" for n in uploads)}
            files = {n: (f"{n}.xml", upload_votable(u), "application/x-votable+xml") for n, u in uploads.items()}
        try:
            r = session.post(f"{self.url}/sync", data=params, files=files, stream=True)
        except requests.Timeout:
            raise TransientFault(f"upstream TAP service {self.url} did not answer within {self.config.timeout} s")
        except requests.RequestException as e:
            raise TransientFault(f"upstream TAP service {self.url} unreachable ({type(e).__name__})")
        if r.status_code >= 500 and not _is_votable(r):
            raise TransientFault(f"upstream TAP service {self.url} failed: HTTP {r.status_code} {r.text[:300]}")
        return r

    def _run_async(self, session, params: dict, context, uploads: dict | None = None):
        """Run on the upstream's UWS (pyvo ``AsyncTAPJob``), polling with blocking WAIT; the
        upstream job is aborted and deleted when the gateway job is cancelled, deleted after use."""
        import pyvo

        try:
            extra = {"RESPONSEFORMAT": params["RESPONSEFORMAT"]} if "RESPONSEFORMAT" in params else {}
            if uploads:
                extra["uploads"] = {n: io.BytesIO(upload_votable(u)) for n, u in uploads.items()}
            job = pyvo.dal.AsyncTAPJob.create(
                self.url, params["QUERY"], maxrec=params.get("MAXREC"), session=session, **extra
            )
        except DALServiceError as e:
            raise TransientFault(f"upstream TAP service {self.url} refused the job: {e}")

        def cancel():
            try:
                job.abort()
                job.delete()
            except Exception:  # noqa: BLE001 - best effort; the upstream destroys it later anyway
                log.warning("could not cancel upstream job %s", job.url)

        context.on_cancel(cancel)
        try:
            job.run()
            while job.phase not in ("COMPLETED", "ERROR", "ABORTED"):
                context.check()
                job._update(session.get(job.url, params={"WAIT": self.config.poll_wait}))
            if job.phase != "COMPLETED":
                msg = job.errorsummary.message.content if job.errorsummary and job.errorsummary.message else job.phase
                raise UsageFault(f"upstream TAP service {self.url} said: {msg}")
            result = session.get(job.result_uri, stream=True)
        except (requests.RequestException, DALServiceError) as e:
            context.check()  # a failure caused by our own cancel is a cancel
            raise TransientFault(f"upstream TAP service {self.url} failed during the job ({e})")
        read_body(result, f"upstream TAP service {self.url}")  # whole before the job is deleted
        try:
            job.delete()
        except (requests.RequestException, DALServiceError):
            log.warning("could not delete upstream job %s", job.url)
        return result

    def _parse(self, body: bytes):
        vot = read_votable(body, f"upstream TAP service {self.url}")
        res = next((r for r in vot.resources if r.type == "results"), vot.resources[0] if vot.resources else None)
        status = [i for i in (res.infos if res is not None else []) if i.name == "QUERY_STATUS"]
        if status and status[-1].value == "ERROR":
            raise UsageFault(f"upstream TAP service {self.url} said: {(status[-1].content or '').strip()}")
        if res is None or not res.tables:
            raise TransientFault(f"upstream TAP service {self.url} sent a VOTable without a result table")
        return votable_to_arrow(res.tables[0], f"upstream {self.url}")

    def availability(self) -> tuple[bool, str]:
        if self.url is None:
            return True, f"{self.name}: no upstream TAP service (cone/SIA/DataLink only)"
        try:
            r = self.session.get(self.url + "/availability", timeout=(5, 10))
            ok = r.ok and b"true" in r.content.lower()
            return ok, f"{self.name}: upstream {self.url} {'available' if ok else f'HTTP {r.status_code}'}"
        except requests.RequestException as e:
            return False, f"{self.name}: upstream {self.url} unreachable ({type(e).__name__})"


def upload_votable(up) -> bytes:
    """An uploaded table (Arrow rows, declared columns) as a TABLEDATA VOTable to forward."""
    import numpy as np
    from astropy.io.votable import from_table
    from astropy.table import MaskedColumn
    from astropy.table import Table as AstropyTable

    t = AstropyTable()
    for c in up.table.columns:
        col = up.data.column(c.name)
        mask = col.is_null().to_numpy(zero_copy_only=False)
        if c.datatype in ("char", "unicodeChar"):
            values = np.array([v if v is not None else "" for v in col.to_pylist()], dtype=str)
        else:
            values = (
                col.fill_null(0).to_numpy(zero_copy_only=False)
                if col.null_count
                else col.to_numpy(zero_copy_only=False)
            )
        t[c.name] = MaskedColumn(values, mask=mask, unit=c.unit)
    buf = io.BytesIO()
    from_table(t).to_xml(buf)
    return buf.getvalue()


def read_votable(body: bytes, what: str):
    """Parse an upstream VOTable leniently (astropy, warnings off); TransientFault if it is
    unreadable or stops before its closing ``</VOTABLE>``."""
    from astropy.io.votable import parse

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vot = parse(io.BytesIO(body), verify="ignore")
    except Exception as e:  # noqa: BLE001 - whatever the upstream sent, it is not a VOTable
        if b"VOTABLE" in body[:4096]:
            check_complete(body, "votable", what)  # a cut VOTable is reported as cut
        raise TransientFault(f"{what} sent no readable VOTable ({str(e)[:200]})")
    check_complete(body, "votable", what)  # astropy reads a VOTable cut after a row as a whole one
    return vot


def _is_votable(r) -> bool:
    return "xml" in r.headers.get("Content-Type", "")


def _column(c) -> Column:
    d = c.datatype
    dt = d.content if d is not None and d.content in VOTABLE_DATATYPES else "char"
    size = d.arraysize if d is not None and d.arraysize not in (None, "1") else None
    if dt == "char" and d is not None and d.content not in VOTABLE_DATATYPES:
        size = "*"
    name = c.name
    delimited = name.startswith('"')
    return Column(
        name.strip('"'),
        dt,
        arraysize=size,
        xtype=getattr(d, "extendedtype", None) if d else None,
        unit=str(c.unit) if c.unit else None,
        ucd=c.ucd or None,
        utype=c.utype or None,
        description=c.description,
        principal="principal" in (c.flags or []),
        indexed="indexed" in (c.flags or []),
        std="std" in (c.flags or []),
        delimited=delimited,
    )


def _overflow_at(stream: RowStream, cap: int) -> RowStream:
    """``stream`` with OVERFLOW set when ``cap`` rows came: the upstream's hard limit, at which
    it stops without saying so in CSV (a cut answer is never passed off as complete)."""
    batches = stream.batches

    def counted():
        n = 0
        for b in batches:
            n += b.num_rows
            yield b
        if n >= cap:
            stream.overflow = True

    stream.batches = counted()
    for name, encode in list(stream.encoded.items()):

        def encoded(encode=encode):
            yield from encode()
            if (stream.rows_passed or 0) >= cap:
                stream.overflow = True

        stream.encoded[name] = encoded
    return stream


def table_json(t: Table) -> dict:
    d = asdict(t)
    return d


def table_from_json(d: dict) -> Table:
    cols = [Column(**c) for c in d.pop("columns")]
    fks = [
        ForeignKey(**{**f, "from_columns": tuple(f["from_columns"]), "target_columns": tuple(f["target_columns"])})
        for f in d.pop("foreign_keys")
    ]
    return Table(columns=cols, foreign_keys=fks, **d)
