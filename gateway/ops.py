"""Operations: request ids, one structured access line per request, Prometheus metrics, and
the health and readiness probes (``docs/deployment.md`` § Operating it).

* **Request ids.** Every request gets an id: the client's ``X-Request-ID`` if it is a short
  token (at most 64 characters of ``[A-Za-z0-9._-]``), otherwise a new one. It is sent back as
  ``X-Request-ID``, written in the access line, and kept in the ``uws:jobInfo`` of the jobs
  the request creates (``request_id``).
* **Access log** (structlog; JSON with ``service.log_format: json``, readable lines with
  ``console``). When the last byte has been sent, each request logs one ``request`` event. It
  has the method, path (no query string: queries may carry tokens), protocol, archive, status,
  rows, bytes, duration, and the upstream calls the request made: archive, the native endpoint
  without query string or user info, status, and duration. Credentials never reach the log.
* **Metrics** at ``/metrics`` (Prometheus text exposition, prometheus-client):
  ``vo_gateway_requests_total{protocol,status}``,
  ``vo_gateway_request_duration_seconds{protocol}``,
  ``vo_gateway_upstream_requests_total{archive,status}``,
  ``vo_gateway_upstream_request_duration_seconds{archive}``,
  ``vo_gateway_result_cache_total{result}``, ``vo_gateway_rows_streamed_total{protocol}``,
  ``vo_gateway_bytes_streamed_total{protocol}`` and ``vo_gateway_jobs{phase}`` (read from
  the job store at each scrape).  Under ``vo-gateway serve`` the worker processes share their
  counters through ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode), so
  any worker's ``/metrics`` gives the service's totals.
* ``/healthz``: the process answers.  ``/readyz``: the configuration is loaded and the job store
  answers (503 otherwise).  VOSI ``/tap/availability`` still probes every archive.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import structlog
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .hookspecs import hookimpl

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("vo_gateway_requests", "HTTP requests answered", ["protocol", "status"], registry=REGISTRY)
LATENCY = Histogram(
    "vo_gateway_request_duration_seconds",
    "time from the request to the last byte of the answer",
    ["protocol"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
UPSTREAM = Counter(
    "vo_gateway_upstream_requests", "requests to upstream archives", ["archive", "status"], registry=REGISTRY
)
UPSTREAM_LATENCY = Histogram(
    "vo_gateway_upstream_request_duration_seconds",
    "time to an upstream's response headers",
    ["archive"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
CACHE = Counter("vo_gateway_result_cache", "result cache look-ups", ["result"], registry=REGISTRY)
ROWS = Counter("vo_gateway_rows_streamed", "result rows written", ["protocol"], registry=REGISTRY)
BYTES = Counter("vo_gateway_bytes_streamed", "response bytes sent", ["protocol"], registry=REGISTRY)

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
PROTOCOLS = {"tap", "scs", "sia", "sia1", "soda", "datalink", "data"}
log = structlog.get_logger("gateway.access")


@dataclass
class RequestState:
    """What one request did, gathered while it runs and streams."""

    request_id: str
    protocol: str
    started: float = field(default_factory=time.perf_counter)
    archive: str | None = None
    rows: int = 0
    upstream: list[dict] = field(default_factory=list)


#: the request being answered in this thread (None in job threads and at start-up)
CURRENT: ContextVar[RequestState | None] = ContextVar("vo_gateway_request", default=None)
#: the archive whose code runs now (set by :func:`gateway.faults.naming_archive`)
ARCHIVE: ContextVar[str | None] = ContextVar("vo_gateway_archive", default=None)


def request_id() -> str | None:
    state = CURRENT.get()
    return state.request_id if state is not None else None


def endpoint(url: str) -> str:
    """``url`` without user info, query string or fragment: what may be logged of it."""
    u = urlsplit(url)
    host = u.hostname or ""
    port = f":{u.port}" if u.port else ""
    return f"{u.scheme}://{host}{port}{u.path}"


def record_upstream(method: str, url: str, status: int | None, seconds: float, kind: str | None = None) -> None:
    """One upstream call (:class:`gateway.upstream.UpstreamSession`): metrics, and the access
    line of the request that made it.  Labelled by the archive whose code made it, else by
    ``kind`` (``upload``: a TAP_UPLOAD fetch, whose hosts users choose), else by host."""
    archive = ARCHIVE.get() or kind or (urlsplit(url).hostname or "unknown")
    code = str(status) if status is not None else "failed"
    UPSTREAM.labels(archive, code).inc()
    UPSTREAM_LATENCY.labels(archive).observe(seconds)
    state = CURRENT.get()
    if state is not None:
        state.upstream.append(
            {
                "archive": archive,
                "method": method,
                "endpoint": endpoint(url),
                "status": code,
                "ms": round(seconds * 1e3, 1),
            }
        )


def record_cache(hit: bool) -> None:
    CACHE.labels("hit" if hit else "miss").inc()


@hookimpl
def gateway_query_finished(actor, protocol, archive, query, rows, overflow, error):
    """The rows a query wrote, for the access line and ``vo_gateway_rows_streamed_total``."""
    ROWS.labels(protocol).inc(rows or 0)
    state = CURRENT.get()
    if state is not None:
        state.rows += rows or 0
        state.archive = archive if state.archive in (None, archive) else "several"


def _protocol(path: str) -> str:
    first = path.strip("/").split("/", 1)[0]
    if first in PROTOCOLS:
        return first
    return "ops" if first in ("metrics", "healthz", "readyz") else "web"


def configure_logging(fmt: str) -> None:
    """structlog over the standard library: JSON lines (``json``) or readable ones (``console``)."""
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),  # today's stderr (tests swap it)
        cache_logger_on_first_use=False,
    )
    logging.getLogger("gateway").setLevel(logging.INFO)


def init_app(app: Flask) -> None:
    app.before_request(_begin)
    app.after_request(_end)
    app.register_blueprint(bp)


def _begin() -> None:
    given = request.headers.get("X-Request-ID", "")
    rid = given if REQUEST_ID.fullmatch(given) else secrets.token_hex(8)
    state = RequestState(rid, _protocol(request.path))
    g.vo_request = state
    CURRENT.set(state)


def _end(response: Response) -> Response:
    state: RequestState | None = getattr(g, "vo_request", None)
    if state is None:
        return response
    response.headers["X-Request-ID"] = state.request_id
    method, path, status = request.method, request.path, response.status_code

    def finish(nbytes: int) -> None:
        seconds = time.perf_counter() - state.started
        REQUESTS.labels(state.protocol, str(status)).inc()
        LATENCY.labels(state.protocol).observe(seconds)
        BYTES.labels(state.protocol).inc(nbytes)
        log.info(
            "request",
            request_id=state.request_id,
            method=method,
            path=path,
            protocol=state.protocol,
            archive=state.archive,
            status=status,
            rows=state.rows,
            bytes=nbytes,
            ms=round(seconds * 1e3, 1),
            upstream=state.upstream,
        )
        CURRENT.set(None)

    if response.is_streamed:
        body = response.response

        def counted():
            n = 0
            try:
                for chunk in body:
                    n += len(chunk)
                    yield chunk
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
                finish(n)

        response.response = counted()
    else:
        finish(response.calculate_content_length() or 0)
    return response


bp = Blueprint("ops", __name__)


@bp.route("/healthz")
def healthz():
    """Liveness: the process answers (nothing else is checked)."""
    return Response("ok\n", mimetype="text/plain")


@bp.route("/readyz")
def readyz():
    """Readiness: the configuration is loaded and the job store answers a query."""
    gw = current_app.extensions["vo_gateway"]
    try:
        gw.jobs.store.ping()
    except Exception as e:  # noqa: BLE001 - any store failure means not ready
        return Response(f"not ready: job store unreachable ({type(e).__name__})\n", status=503, mimetype="text/plain")
    return Response("ready\n", mimetype="text/plain")


class JobsCollector:
    """``vo_gateway_jobs{phase}``, counted in the job store when scraped (the same in every
    process, so not a per-process gauge)."""

    def __init__(self, store):
        self.store = store

    def collect(self):
        family = GaugeMetricFamily("vo_gateway_jobs", "UWS jobs in the job store by phase", labels=["phase"])
        try:
            for phase, n in self.store.count_by_phase().items():
                family.add_metric([phase], n)
        except Exception:  # noqa: BLE001 - the other metrics are still worth a scrape
            logging.getLogger("gateway").exception("metrics: the job store could not be counted")
        yield family


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


@bp.route("/metrics")
def metrics():
    """Prometheus text exposition: the counters (every worker's, in multiprocess mode) and the
    job store's jobs by phase."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        counters = CollectorRegistry()
        multiprocess.MultiProcessCollector(counters)
    else:
        counters = REGISTRY
    jobs = CollectorRegistry()
    jobs.register(JobsCollector(current_app.extensions["vo_gateway"].jobs.store))
    return Response(generate_latest(counters) + generate_latest(jobs), mimetype=CONTENT_TYPE_LATEST)
