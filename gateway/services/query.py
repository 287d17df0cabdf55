"""Running queries: MAXREC policy (DALI 1.1 §3.4.4, TAP 1.1 §2.7.4), planning (which archive
answers), permission and notification hooks.

Planning: a query whose tables all belong to one archive that evaluates ADQL goes to it whole;
any other query is planned by :mod:`gateway.planner` (sub-queries to each archive, the rest
evaluated locally).
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..adql import analyze
from ..archive import Archive, Cone, ImageQuery
from ..auth import public
from ..catalogue import UploadOverlay
from ..dali import Params
from ..faults import FatalFault, Fault, TransientFault, UsageFault, naming_archive, naming_batches
from ..rowstream import RowStream
from ..sky import box_corners, polygon_contains, shape_overlaps_polygon, shape_vertices, unit
from ..uploads import UploadReader
from ..uws.executor import JobContext
from ..uws.job import Result

log = logging.getLogger("gateway.query")

LANGS = {"ADQL", "ADQL-2.0", "ADQL-2.1"}


@dataclass
class Tally:
    """What one hooked archive call reports to ``gateway_query_finished``."""

    rows: int = 0
    error: str | None = None


@dataclass
class QueryResult:
    stream: RowStream
    archive: str


class QueryService:
    def __init__(self, gateway):
        from .watch import SyncWatch

        self.gw = gateway
        self.watch = SyncWatch()

    def sync_context(self, actor, service_url: str | None, client_socket) -> tuple[JobContext, object]:
        """The context of one sync request, watched (:mod:`gateway.services.watch`): cancelled
        when ``client_socket`` closes or ``service.sync_execution_duration`` passes.  Returns
        (context, release); call ``release()`` once the response has ended."""
        context = JobContext(None, actor, service_url=service_url)
        token = self.watch.watch(context, client_socket, self.gw.config.service.sync_execution_duration)
        return context, lambda: self.watch.release(token)

    def maxrec(self, requested: int | None) -> int:
        svc = self.gw.config.service
        if requested is None:
            return svc.maxrec_default
        return min(requested, svc.maxrec_hard)

    def check_permission(self, actor, action: str, archive: str, resource: str) -> None:
        """``gateway_permission_allowed`` for ``actor`` (without credentials); raises a 403
        Fault when a plugin refuses ``action`` on ``resource`` of ``archive``."""
        ok = self.gw.pm.hook.gateway_permission_allowed(
            actor=public(actor), action=action, archive=archive, resource=resource
        )
        if ok is False:
            raise Fault(f"not allowed to {action} {resource}", status=403)

    def adql(
        self,
        lang: str | None,
        text: str | None,
        maxrec: int | None,
        actor=None,
        uploads: dict | None = None,
        context=None,
        service_url: str | None = None,
        response_format: str | None = None,
    ) -> QueryResult:
        """Validate and run an ADQL query.  ``maxrec`` is the client's MAXREC (None: default);
        ``uploads`` the TAP_UPLOAD tables ({lower name: UploadTable}); ``context`` the UWS
        JobContext of an async job (a sync query gets one with ``job_id`` None);
        ``response_format`` the MIME type of the output format (``JobContext.response_format``).  Raises UsageFault (400) for the client's mistakes."""
        if lang is None:
            raise UsageFault("parameter LANG is required (LANG=ADQL)")
        if lang.upper() not in LANGS:
            raise UsageFault(f"unknown query language {lang!r}; this service accepts ADQL, ADQL-2.0, ADQL-2.1")
        if text is None:
            raise UsageFault("parameter QUERY is required")
        if len(text) > self.gw.config.service.max_query_length:
            raise UsageFault(
                f"QUERY has {len(text)} characters; this service accepts at most "
                f"{self.gw.config.service.max_query_length} (upload long lists as a TAP_UPLOAD table)"
            )
        catalogue = UploadOverlay(self.gw.catalogue, uploads) if uploads else self.gw.catalogue
        q = analyze(text, catalogue)
        q.uploads = uploads or {}
        for t in q.tables:
            if t.schema != "TAP_UPLOAD":
                self.check_permission(actor, "query", self.gw.catalogue.lookup(t.schema, t.name)[0], t.qualified_name)
        archive, native, plan = self._route(q)
        if archive is None:
            return self._federated(plan, q, text, maxrec, actor, context, service_url, response_format)
        name = archive.name
        for fn in sorted(q.udfs):
            owners = self.gw.catalogue.udfs()[fn][1]
            if name not in owners:
                raise UsageFault(
                    f"{fn.lower()}() is a function of archive {', '.join(owners)} only (declared in "
                    f"/tap/capabilities); this query runs on archive {name}, which lacks it"
                )
        limit = self.maxrec(maxrec)
        if context is None:
            context = JobContext(None, actor, service_url=service_url)
        context.response_format = response_format
        self.gw.pm.hook.gateway_query_started(actor=public(actor), protocol="tap", archive=name, query=text)
        request = archive.result_key(native) if self.gw.cache is not None and not q.uploads else None
        key = None if request is None else self.gw.cache.key(name, request, limit, q.top, response_format, actor)
        stream = None if key is None else self.gw.cache.get(key)
        if stream is None:
            with naming_archive(name):
                if limit == 0:
                    stream = archive.execute(native, 0, top=None, context=context)
                    stream.overflow = True
                else:
                    stream = archive.execute(native, limit, top=q.top, context=context)
            if key is not None:
                stream = self.gw.cache.tee(key, stream)
        if stream.datalink is not None and context.service_url:
            add_datalink_descriptor(stream, context.service_url)
        return QueryResult(stream, name)

    def _route(self, q):
        """(archive, native request, None) when one archive runs the whole query, else
        (None, None, the planner's :class:`~gateway.planner.Plan`).  A query with uploads that
        the archive cannot translate whole (STILTS tapskymatch's DISTANCE in the select list,
        on HSC-SSP) is planned instead; if planning fails too, the archive's own refusal is
        what the user reads."""
        archive = self.gw.planner.single_archive(q)
        if archive is None:
            return None, None, self.gw.planner.plan(q)
        try:
            return archive, archive.translate(q), None
        except UsageFault as refusal:
            if not q.uploads:
                raise
            try:
                return None, None, self.gw.planner.plan(q)
            except UsageFault:
                raise refusal from None

    def _federated(self, plan, q, text: str, maxrec, actor, context, service_url, response_format) -> QueryResult:
        """A query over several archives, or over an archive that scans: run by
        :mod:`gateway.planner` (sub-queries upstream, the rest in a local DuckDB)."""
        limit = self.maxrec(maxrec)
        if context is None:
            context = JobContext(None, actor, service_url=service_url)
        context.response_format = response_format
        names = sorted({s.ref.archive for s in plan.steps} - {UploadOverlay.ARCHIVE})
        label = "+".join(names) or "tap_upload"
        self.gw.pm.hook.gateway_query_started(actor=public(actor), protocol="tap", archive=label, query=text)
        key = self._plan_key(plan, label, limit, q, response_format, actor)
        stream = None if key is None else self.gw.cache.get(key)
        if stream is None:
            stream = self.gw.planner.run(plan, limit, context)
            if key is not None:
                stream = self.gw.cache.tee(key, stream)
        if stream.datalink is not None and context.service_url:
            add_datalink_descriptor(stream, context.service_url)
        return QueryResult(stream, label)

    def _plan_key(self, plan, label: str, limit, q, response_format, actor) -> str | None:
        """The result-cache key of a planned query that reads a remote archive (a local one is
        read again faster than cached): the query, every step's sub-query and archive, MAXREC,
        the output format and the caller (:meth:`gateway.cache.ResultCache.key`).  None without a
        cache, with uploads, or when every archive is local."""
        from ..engine import DuckDBArchive
        from ..planner import _subquery_text

        if self.gw.cache is None or q.uploads:
            return None
        archives = self.gw.catalogue.archives
        if all(isinstance(archives[s.ref.archive], DuckDBArchive) for s in plan.steps):
            return None
        steps = [f"{s.ref.archive}:{s.how}:{_subquery_text(s.ref, None)}" for s in plan.steps]
        return self.gw.cache.key(label, "\n".join([q.ast.sql(), *steps]), limit, q.top, response_format, actor)

    def explain(self, text: str, uploads: dict | None = None) -> dict:
        """What the gateway would do with an ADQL query (``vo-gateway explain``): the archive
        that runs it whole, or the federated :class:`gateway.planner.Plan`."""
        catalogue = UploadOverlay(self.gw.catalogue, uploads) if uploads else self.gw.catalogue
        q = analyze(text, catalogue)
        q.uploads = uploads or {}
        archive, _, plan = self._route(q)
        if archive is not None:
            return {
                "federated": False,
                "archive": archive.name,
                "why": "every table is on this archive, which evaluates the whole query",
            }
        return plan.explain()

    def read_uploads(self, values: list[str], open_part) -> dict | None:
        """TAP_UPLOAD tables named by the ``UPLOAD`` parameter values (None if there are none)."""
        if not values:
            return None
        return UploadReader(self.gw.config.uploads).read_all(values, open_part)

    def run_job(self, job, context, job_dir: Path) -> list[Result]:
        """The TAP async runner (TAP 1.1 §2.2.2): run the job's query and write the result with
        the same streaming writer as sync to ``job_dir``; the result has id ``result``."""
        p = Params(job.parameters)
        fmt, ctype = self.gw.formats.for_params(p)

        def open_part(part: str):  # read at once: no file handle outlives the job's upload reading
            path = job.uploads.get(part)
            return io.BytesIO(Path(path).read_bytes()) if path else None

        from ..upstream import Scope

        Scope.of(context, "the job was aborted")  # ABORT and executionDuration cut its upstream calls off
        try:
            return self._run_job(p, fmt, ctype, context, job_dir, open_part)
        finally:
            Scope.exit()

    def tap_answer(
        self, p: Params, fmt, actor, context, open_part, service_url: str | None = None, on_done=None
    ) -> Iterator[bytes]:
        """The one TAP answer path of sync and async (TAP 1.1 §2.3: LANG, QUERY, MAXREC,
        UPLOAD; ``fmt`` the RESPONSEFORMAT's output format): the query run through
        :meth:`adql`, written by the format's streaming writer, its chunks counted.  When they
        end (or the consumer stops), ``on_done(rows)`` and then ``gateway_query_finished`` run.
        Sync streams the chunks to the client, async writes them to the job's result file.
        Raises Fault for the query's mistakes before any chunk."""
        text = p.get("QUERY")
        res = self.adql(
            p.get("LANG"),
            text,
            p.get_int("MAXREC"),
            actor=actor,
            uploads=self.read_uploads(p.getlist("UPLOAD"), open_part),
            context=context,
            service_url=service_url,
            response_format=fmt.mime,
        )
        infos = [("standardID", "ivo://ivoa.net/std/TAP"), ("QUERY", text)]
        if res.archive in self.gw.catalogue.archives:  # one archive's rows: its failures name it
            res.stream.batches = naming_batches(res.stream.batches, res.archive)

        def done(rows):
            if on_done is not None:
                on_done(rows)
            self.finished(actor, "tap", res.archive, text, res.stream, rows)

        return counting(fmt.writer(res.stream, infos), res.stream, done)

    def _run_job(self, p, fmt, ctype, context, job_dir: Path, open_part) -> list[Result]:
        path = job_dir / f"result.{fmt.extension}"
        tmp = path.with_suffix(".part")
        rows = 0

        def done(n):
            nonlocal rows
            rows = n

        chunks = self.tap_answer(p, fmt, context.actor, context, open_part, on_done=done)
        written = 0
        try:
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                    written += len(chunk)
                    context.check()
                f.flush()
                os.fsync(f.fileno())  # on disk before the job says COMPLETED
            if os.stat(tmp).st_size != written:
                raise FatalFault(f"the result was not fully written ({os.stat(tmp).st_size} of {written} bytes)")
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise storage_fault(e)
        except BaseException:
            tmp.unlink(missing_ok=True)  # never a partial result left behind
            raise
        return [Result("result", ctype, str(path), path.stat().st_size, rows)]

    def cone(self, archive: Archive, table, cone: Cone, maxrec: int | None, verb: int, actor, write) -> Iterator[bytes]:
        """SCS (SCS 1.03 §2) on ``table`` of ``archive``: after the ``cone`` permission, the
        archive's rows within ``cone`` (``verb`` 1-3), written by ``write(stream)``; the chunks
        are counted and ``gateway_query_finished`` fires when they end (or with the error when
        the archive refuses)."""
        self.check_permission(actor, "cone", archive.name, table.qualified_name)
        query = {"RA": cone.ra, "DEC": cone.dec, "SR": cone.radius}
        self.started(actor, "scs", archive.name, query)
        try:
            with naming_archive(archive.name):
                stream = archive.cone_search(table, cone, self.maxrec(maxrec), verb)
            stream.batches = naming_batches(stream.batches, archive.name)
        except Exception as e:
            self.finished(actor, "scs", archive.name, query, None, 0, error=hook_error(e))
            raise
        return counting(
            write(stream), stream, lambda rows: self.finished(actor, "scs", archive.name, query, stream, rows)
        )

    def images(self, query: ImageQuery, actor, local_urls) -> RowStream:
        """SIA 2.0 (SIA 2.0 §2): the ObsCore rows of every image archive for ``query``, each
        archive after the ``images`` permission and within the query hooks; archives whose
        images are local files get their access URLs from ``local_urls(stream, archive name)``.
        At most ``query.maxrec`` rows, ``overflow`` set when there were more."""
        import pyarrow as pa

        from ..obscore import OBSCORE_COLUMNS

        batches, overflow = [], False
        for archive in self.gw.image_archives():
            own = archive.image_collections()
            if query.collection and own is not None and not set(own) & set(query.collection):
                continue
            self.check_permission(actor, "images", archive.name, archive.name)
            with self.hooked(actor, "sia", archive.name, query_params(query)) as tally:
                stream = archive.image_search(query)
                if archive.image_records():  # images with local files
                    stream = local_urls(stream, archive.name)
                got = list(stream)
                tally.rows = sum(b.num_rows for b in got)
            batches += got
            overflow |= stream.overflow
        limit = query.maxrec if query.maxrec is not None else self.gw.config.service.sia_maxrec
        rows = sum(b.num_rows for b in batches)
        kept = pa.Table.from_batches(batches, schema=batches[0].schema).slice(0, limit) if batches and limit else None
        return RowStream(
            OBSCORE_COLUMNS,
            kept.combine_chunks().to_batches() if kept is not None and kept.num_rows else [],
            overflow=overflow or rows > limit or limit == 0,
        )

    def sia1_images(self, ra, dec, sra, sdec, mode: str, actor, query: dict) -> list[tuple[Archive, dict]]:
        """SIA 1.0 (SIA 1.0 §4.1): the ObsCore records of every image archive that meet the
        POS/SIZE box (degrees) under ``mode`` (COVERS, ENCLOSED, CENTER or OVERLAPS), local
        footprints matched here, upstream image services asked with the same INTERSECT.  Each
        archive after the ``images`` permission, between ``query_started`` and
        ``query_finished`` (``protocol="sia"``)."""
        out: list[tuple[Archive, dict]] = []
        for archive in self.gw.image_archives():
            self.check_permission(actor, "images", archive.name, archive.name)
            with self.hooked(actor, "sia", archive.name, {**query, "INTERSECT": mode}) as tally:
                local = archive.image_records()
                found = [r for r in local if _sia1_match(r, ra, dec, sra, sdec, mode)]
                if not local:  # an upstream image service: asked with the same INTERSECT
                    found = _upstream_images(archive, ra, dec, sra, sdec, mode, self.gw.config.service.sia_maxrec)
                tally.rows = len(found)
            out += [(archive, r) for r in found]
        return out

    @contextmanager
    def hooked(self, actor, protocol: str, archive: str, query):
        """The query hooks around one archive call: ``gateway_query_started``, the body, and in
        a ``finally`` ``gateway_query_finished`` with the rows the body sets on the yielded
        :class:`Tally` and the error it raised (a Fault's message; "internal error" for
        anything else).  Hooks never see credentials (:func:`gateway.auth.public`)."""
        self.started(actor, protocol, archive, query)
        tally = Tally()
        try:
            with naming_archive(archive):
                yield tally
        except Exception as e:
            tally.error = hook_error(e)
            raise
        finally:
            self.finished(actor, protocol, archive, query, None, tally.rows, error=tally.error)

    def started(self, actor, protocol: str, archive: str, query) -> None:
        """``gateway_query_started`` (never with credentials: :func:`gateway.auth.public`)."""
        self.gw.pm.hook.gateway_query_started(actor=public(actor), protocol=protocol, archive=archive, query=query)

    def finished(self, actor, protocol, archive, query, stream: RowStream | None, rows: int, error: str | None = None):
        """``gateway_query_finished`` after a response was written (or failed: ``error``)."""
        self.gw.pm.hook.gateway_query_finished(
            actor=public(actor),
            protocol=protocol,
            archive=archive,
            query=query,
            rows=rows,
            overflow=bool(stream is not None and stream.overflow),
            error=error if error is not None else (stream.error if stream is not None else None),
        )


def query_params(query) -> dict:
    """The parameters of an image query, for the hooks: the set fields of the dataclass."""
    from dataclasses import asdict, is_dataclass

    if not is_dataclass(query) or isinstance(query, type):
        return {}
    return {k: v for k, v in asdict(query).items() if v not in (None, [], ())}


def storage_fault(e: OSError) -> Fault:
    """The job's error for a failed write of its result: "results storage is full" for
    ENOSPC/EDQUOT (a retry once space is freed works: transient), else the system's message."""
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return TransientFault("results storage is full: the result could not be written; try again later")
    return FatalFault(f"the result could not be written ({e.strerror or type(e).__name__})")


def add_datalink_descriptor(stream: RowStream, service_url: str) -> None:
    """A DataLink service descriptor (DataLink 1.1 §4) whose ID is the column ``stream.datalink``
    names, so clients (pyvo ``iter_datalinks``, TOPCAT) find each row's links."""
    import re

    from ..formats.datalink import links_descriptor

    assert stream.datalink is not None
    archive, column = stream.datalink
    fid = column if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", column) else "datalink_id"  # astropy names by ID
    stream.field_ids[column] = fid
    stream.postamble += links_descriptor(f"{service_url}/datalink/{archive}/links", fid)


def counting(chunks: Iterator[bytes], stream: RowStream, on_done) -> Iterator[bytes]:
    """Pass writer chunks through; when done, report rows written to ``on_done(rows)``."""
    rows = 0
    orig = stream.batches

    def count():
        nonlocal rows
        for b in orig:
            rows += b.num_rows
            yield b

    stream.batches = count()
    try:
        yield from chunks
    finally:
        stream.close()
        try:
            on_done(rows or stream.rows_passed)
        except Exception:  # noqa: BLE001 - a notification hook must not break a response
            log.exception("gateway_query_finished hook failed")


def _upstream_images(archive, ra, dec, sra, sdec, mode, maxrec: int) -> list[dict]:
    """SIA 1.0 records from an archive without local image records: its ``image_search`` on
    the POS/SIZE box (SIA 1.0 §4.1), the INTERSECT mode passed on (``ImageQuery.intersect``)."""
    cosd = max(math.cos(math.radians(dec)), 1e-6)
    box = ("range", ra - sra / 2 / cosd, ra + sra / 2 / cosd, max(-90.0, dec - sdec / 2), min(90.0, dec + sdec / 2))
    q = ImageQuery(pos=[box], intersect=mode, maxrec=maxrec)
    out = []
    for batch in archive.image_search(q):
        out += batch.to_pylist()
    return out


def hook_error(e: Exception) -> str:
    """The ``error`` ``gateway_query_finished`` gets for an exception: a Fault's message (the
    user's or the upstream's words), "internal error" for anything else (never a trace)."""
    return str(e) if isinstance(e, Fault) else f"internal error ({type(e).__name__})"


def _sia1_match(r, ra, dec, sra, sdec, mode) -> bool:
    fp = r["_footprint"]
    fpv = unit([v[0] for v in fp], [v[1] for v in fp])
    if sra == 0 and sdec == 0 or mode == "CENTER":
        return bool(polygon_contains(fpv, unit([ra], [dec]))[0])
    box = ("polygon", *box_corners(ra, dec, sra, sdec))
    boxv = shape_vertices(box)
    bv = unit([v[0] for v in boxv], [v[1] for v in boxv])
    if mode == "COVERS":
        return bool(polygon_contains(fpv, bv).all())
    if mode == "ENCLOSED":
        return bool(polygon_contains(bv, fpv).all())
    return shape_overlaps_polygon(box, fp)
