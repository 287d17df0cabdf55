"""The Flask application factory.

``create_app(config, plugins=(), load_entrypoints=True)`` builds a fresh plugin manager, the
archives named in the config (each validated by its plugin's model), the catalogue and
TAP_SCHEMA, and registers the protocol blueprints.  Nothing happens at import time.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask, g, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from .archive import Archive
from .cache import ResultCache
from .catalogue import Catalogue
from .config import ConfigError, GatewayConfig, format_validation_error, load_config
from .faults import FatalFault, Fault, UsageFault
from .formats import FormatRegistry
from .planner import Planner
from .plugins import archive_kinds, make_plugin_manager
from .schema import Table
from .services.cutout import CutoutService
from .services.query import QueryService
from .uws.service import JobService

log = logging.getLogger("gateway")


class Gateway:
    """App-level state: config, plugin manager, archives, catalogue, formats, services."""

    def __init__(self, config: GatewayConfig, plugins=(), load_entrypoints=True):
        self.config = config
        self.pm = make_plugin_manager(plugins, load_entrypoints, config.service.plugins_blocked)
        self.kinds: dict[str, type[Archive]] = archive_kinds(self.pm)
        formats: list = []
        for group in reversed(self.pm.hook.gateway_register_formats()):
            formats.extend(group or [])
        by_mime = {}
        for f in formats:
            by_mime[f.mime] = f
        self.formats = FormatRegistry(list(by_mime.values()))
        archives: dict[str, Archive] = {}
        problems = []  # every archive section's problems, reported at once
        lines = config.yaml_lines
        for name, section in config.archives.items():
            kind = section.get("kind")
            cls = self.kinds.get(kind) if isinstance(kind, str) else None
            if cls is None:
                close = difflib.get_close_matches(str(kind), list(self.kinds), n=1)
                at = f" (line {lines[('archives', name, 'kind')]})" if ("archives", name, "kind") in lines else ""
                problems.append(
                    f"archives.{name}.kind{at}: unknown kind {kind!r}"
                    + (f"; did you mean {close[0]!r}?" if close else "")
                    + f" (installed kinds: {', '.join(sorted(self.kinds)) or 'none'})"
                )
                continue
            try:
                acfg = cls.Config.model_validate(section)
            except ValidationError as e:
                problems.append(format_validation_error(e, f"archives.{name}", lines, cls.Config))
                continue
            try:
                archives[name] = cls(name, acfg, base_dir=config.base_dir)
            except (ValueError, OSError) as e:
                problems.append(f"archives.{name}: {e}")
        if problems:
            raise ConfigError("\n".join(problems))
        self.catalogue = Catalogue(archives)
        self.cache = ResultCache(config.cache, config.base_dir) if config.cache.ttl else None
        self.planner = Planner(self)
        self.queries = QueryService(self)
        self.cutouts = CutoutService(self)
        self.jobs = JobService(config.jobs, config.base_dir)
        self.jobs.runners["tap"] = self.queries.run_job
        for name, a in archives.items():
            if a.capabilities.soda_async:
                self.jobs.runners[f"soda:{name}"] = self.cutouts.job_runner(a)
        self.started = datetime.now(UTC).replace(microsecond=0)

    # -- helpers used by the blueprints -----------------------------------------------------
    def url(self, path: str = "") -> str:
        """Absolute external URL of ``path`` under the service root (P-01: absolute Locations)."""
        base = str(self.config.service.base_url or request.host_url).rstrip("/")
        return f"{base}/{path}".rstrip("/") if path else base

    def actor(self):
        """The caller of the current request (``gateway_actor_from_request``), resolved once per
        request and kept for it (flask ``g``)."""
        if "vo_gateway_actor" in g:
            return g.vo_gateway_actor
        try:
            actor = self.pm.hook.gateway_actor_from_request(request=request)
        except Exception:  # noqa: BLE001
            log.exception("gateway_actor_from_request failed")
            actor = None
        g.vo_gateway_actor = actor
        return actor

    def availability(self) -> tuple[bool, list[str]]:
        ok, notes = True, []
        for name, a in self.catalogue.archives.items():
            try:
                up, note = a.availability()
            except Exception as e:  # noqa: BLE001 - a probe failing means "down"
                up, note = False, f"{name}: availability probe failed ({type(e).__name__})"
            ok &= up
            notes.append(note if up else f"DOWN {note}")
        return ok, notes

    def geometry_functions(self) -> set[str]:
        sets = [a.capabilities.geometry_functions for a in self.catalogue.archives.values() if a.capabilities.adql]
        got = set.intersection(*map(set, sets)) if sets else set()
        if got & {"POINT", "CIRCLE", "BOX", "POLYGON"}:  # rewritten into them before any archive sees the query
            got |= {"COORDSYS", "REGION"}  # (gateway.adql.validate, ADQL 2.0 §2.4.9 and §2.4.14)
        return got

    def any_archive(self, capability: str) -> bool:
        """Whether some ADQL archive has ``capability`` (a :class:`Capabilities` flag): the
        feature is declared (TAPRegExt) and archives without it refuse it by name."""
        return any(getattr(a.capabilities, capability) for a in self.catalogue.archives.values() if a.capabilities.adql)

    def udfs(self) -> list:
        """Every archive's user-defined function forms (:class:`~gateway.archive.Udf`)."""
        return [u for forms, _ in self.catalogue.udfs().values() for u in forms]

    def image_archives(self) -> list[Archive]:
        return [a for a in self.catalogue.archives.values() if a.capabilities.images]

    def positional_tables(self):
        """(archive name, table) of every table with a cone search: ADQL tables with a position,
        then cone-only tables of upstream SCS services."""
        out = [(a, t) for a, t in self.catalogue.tables() if t.positional]
        for name, arch in self.catalogue.archives.items():
            out += [(name, t) for t in arch.cone_tables()]
        return out

    def cone_table(self, qualified: str):
        """(archive name, table) for an SCS table name, or None."""
        return next(
            ((a, t) for a, t in self.positional_tables() if t.qualified_name.lower() == qualified.lower()), None
        )

    def examples(self) -> dict[str, tuple[str, str, str, list[str]]]:
        """Examples that run on the configured tables (DALI examples; TAP 1.1 §2.6)."""
        out = {}
        tabs = {t.qualified_name: t for _, t in self.catalogue.tables()}
        out["tap_schema_tables"] = (
            "List the tables",
            "All tables of this service with descriptions.",
            "SELECT table_name, description FROM TAP_SCHEMA.tables ORDER BY table_name",
            ["TAP_SCHEMA.tables"],
        )
        pos = [t for t in tabs.values() if t.positional]
        for t in pos[:3]:
            r = example_radius(t.nrows)
            mag = next(
                (c.name for c in t.columns if (c.ucd or "").startswith("phot.mag") and "stat" not in (c.ucd or "")),
                None,
            )
            cols = ", ".join(x for x in (t.id_column, t.ra_column, t.dec_column, mag) if x)
            out[f"cone_{t.name}"] = (
                f"Cone search on {t.qualified_name}",
                f"The 100 rows of {t.qualified_name} nearest a position, within {r} degrees.",
                f"SELECT TOP 100 {cols},\n"
                f"  DISTANCE(POINT('ICRS', {t.ra_column}, {t.dec_column}), POINT('ICRS', {self._centre(t)})) AS dist\n"
                f"FROM {t.qualified_name}\n"
                f"WHERE 1 = CONTAINS(POINT('ICRS', {t.ra_column}, {t.dec_column}), CIRCLE('ICRS', {self._centre(t)}, {r}))\n"
                f"ORDER BY dist",
                [t.qualified_name],
            )
        joins: Counter[str] = Counter()  # two join examples per archive: the idea, not every key
        for name, t in self.catalogue.tables():
            for fk in t.foreign_keys:
                if fk.target_table in tabs and joins[name] < 2:
                    joins[name] += 1
                    tt = tabs[fk.target_table]
                    on = " AND ".join(f"e.{a} = s.{b}" for a, b in zip(fk.from_columns, fk.target_columns))
                    out[f"join_{t.name}"] = (
                        f"Join {t.qualified_name} to {tt.qualified_name}",
                        f"Rows of {t.qualified_name} with their {tt.qualified_name} row ({fk.description or 'foreign key'}).",
                        f"SELECT TOP 50 s.*, e.* FROM {tt.qualified_name} AS s\nJOIN {t.qualified_name} AS e ON {on}",
                        [tt.qualified_name, t.qualified_name],
                    )
        out.update(self._crossmatch_examples(pos))
        for arch in self.catalogue.archives.values():
            out.update(arch.examples())
        return out

    def _crossmatch_examples(self, pos: list) -> dict:
        """One crossmatch example per pair of archives (at most four): a cone on a table of the
        first, its counterparts within 1 arcsec in the second (the federated planner,
        ``docs/planner.md``)."""
        first: dict[str, Table] = {}
        for name, t in self.catalogue.tables():
            if t in pos and name not in first and name != "tap_schema":
                first[name] = t
        sql = [a for a in first if self.catalogue.archives[a].capabilities.adql]
        out: dict[str, tuple[str, str, str, list[str]]] = {}
        for a in sql:
            for b in first:
                if b == a or len(out) >= 4:
                    continue
                ta, tb = first[a], first[b]
                out[f"crossmatch_{a}_{b}"] = (
                    f"Crossmatch {ta.qualified_name} with {tb.qualified_name}",
                    f"Rows of {ta.qualified_name} (archive {a}) in a 0.1 degree cone with their counterparts in "
                    f"{tb.qualified_name} (archive {b}) within 1 arcsec: one query over two archives.",
                    f"SELECT a.{ta.id_column}, b.{tb.id_column} AS {b}_id,\n"
                    f"  DISTANCE(POINT('ICRS', a.{ta.ra_column}, a.{ta.dec_column}), "
                    f"POINT('ICRS', b.{tb.ra_column}, b.{tb.dec_column})) * 3600 AS sep_arcsec\n"
                    f"FROM {ta.qualified_name} AS a\n"
                    f"JOIN {tb.qualified_name} AS b ON 1 = CONTAINS(POINT('ICRS', b.{tb.ra_column}, b.{tb.dec_column}), "
                    f"CIRCLE('ICRS', a.{ta.ra_column}, a.{ta.dec_column}, 1.0 / 3600))\n"
                    f"WHERE 1 = CONTAINS(POINT('ICRS', a.{ta.ra_column}, a.{ta.dec_column}), "
                    f"CIRCLE('ICRS', {self._centre(ta)}, 0.1))",
                    [ta.qualified_name, tb.qualified_name],
                )
        return out

    def _centre(self, t) -> str:
        arch = self.catalogue.archives[next(a for a, tt in self.catalogue.tables() if tt is t)]
        try:
            cur = arch.cursor()  # type: ignore[attr-defined]  # DuckDB archives; others: the fallback
            ra, dec = cur.execute(
                f'SELECT "{t.ra_column}", "{t.dec_column}" FROM "{t.schema}"."{t.name}" '
                f"LIMIT 1 OFFSET {max(0, (t.nrows or 1) // 2)}"
            ).fetchone()
            cur.close()
            return f"{round(ra, 4)}, {round(dec, 4)}"
        except Exception:  # noqa: BLE001 - non-SQL archives: a fixed position
            return "180.0, 0.0"


def example_radius(nrows: int | None) -> float:
    """A cone radius (degrees) that holds about 200 rows of an all-sky table of ``nrows``
    rows (0.5 when the row count is not known), between 0.05 and 5 degrees."""
    if not nrows:
        return 0.5
    r = math.sqrt(200 * ALL_SKY_DEG2 / (math.pi * nrows))
    return round(min(5.0, max(0.05, r)), 2)


ALL_SKY_DEG2 = 4 * math.pi * (180 / math.pi) ** 2  # 41,253 square degrees


#: MIME types compressed for clients that ask (FITS is left alone: image pixels hardly compress)
COMPRESSED = [
    "application/x-votable+xml",
    "text/xml",
    "application/xml",
    "text/csv",
    "text/tab-separated-values",
    "application/json",
    "text/plain",
    "text/html",
]


def compress(app: Flask, level: int) -> None:
    """gzip or deflate responses (Flask-Compress) when the client's ``Accept-Encoding`` asks;
    streamed results stay streamed, compressed chunk by chunk.  BINARY/BINARY2 VOTables are
    sent as they are: base64 of binary cells shrank by 22 % at gzip level 1 for 52 ms per MB
    here (12 MB: 0.62 s), where the benchmark catalogue's CSV shrank 2.3x for 22 ms per MB."""
    from flask_compress import Compress

    class VotableAwareCompress(Compress):
        def after_request(self, response):
            ctype = response.headers.get("Content-Type", "").lower().replace(" ", "")
            if ctype.startswith("application/x-votable+xml") and "serialization=tabledata" not in ctype:
                return response
            return super().after_request(response)

    app.config.update(
        COMPRESS_MIMETYPES=COMPRESSED,
        COMPRESS_LEVEL=level,
        COMPRESS_DEFLATE_LEVEL=level,
        COMPRESS_ALGORITHM=["gzip", "deflate"],
        COMPRESS_ALGORITHM_STREAMING=["gzip", "deflate"],
        COMPRESS_STREAMS=True,
        COMPRESS_MIN_SIZE=1024,
        COMPRESS_EVALUATE_CONDITIONAL_REQUEST=False,
    )
    VotableAwareCompress(app)


def create_app(config: GatewayConfig | str | Path | None = None, plugins=(), load_entrypoints: bool = True) -> Flask:
    """Build the WSGI app.  ``config``: a :class:`GatewayConfig`, a path to config.yaml, or None
    (``$VO_GATEWAY_CONFIG`` or ``./config.yaml``).  ``plugins``: extra plugin objects/modules
    registered after the entry points.  Raises :class:`ConfigError` for invalid configuration."""
    if not isinstance(config, GatewayConfig):
        config = load_config(config)
    app = Flask(__name__, static_folder=None)  # the web blueprint serves /static
    app.response_class.autocorrect_location_header = True
    gw = Gateway(config, plugins, load_entrypoints)
    app.extensions["vo_gateway"] = gw
    app.config["MAX_CONTENT_LENGTH"] = config.uploads.max_bytes + 1_000_000  # uploads + the other fields
    from . import ops

    ops.configure_logging(config.service.log_format)
    ops.init_app(app)  # first: its after_request runs last, on the final (compressed) answer
    from . import limits, upstream

    limits.init_app(app, config.limits)
    upstream.set_concurrency(config.limits.upstream_concurrency)
    gw.jobs.max_active_per_owner = config.limits.async_jobs_per_user
    if config.service.compress_level:
        compress(app, config.service.compress_level)
    app.config["MAX_FORM_MEMORY_SIZE"] = 10_000_000  # a long QUERY is still a form field

    from . import web
    from .protocols import datalink, scs, sia, soda, tap, uws

    app.register_blueprint(uws.make_blueprint("tap", "tap_async", "/tap/async"))
    for name, a in gw.catalogue.archives.items():
        if a.capabilities.soda_async:  # before soda.bp: /soda/{name}/async is this job list
            app.register_blueprint(uws.make_blueprint(f"soda:{name}", f"soda_async_{name}", f"/soda/{name}/async"))
    app.register_blueprint(tap.bp, url_prefix="/tap")
    app.register_blueprint(scs.bp, url_prefix="/scs")
    app.register_blueprint(sia.bp)
    app.register_blueprint(soda.bp, url_prefix="/soda")
    app.register_blueprint(datalink.bp, url_prefix="/datalink")
    web.init_app(app)

    @app.before_request
    def _utf8_query_string():
        """A query string must be UTF-8 once percent-decoded (RFC 3986 §2.5, DALI 1.1 §3.1);
        raw bytes that are not would otherwise fail deep inside the request parser."""
        try:
            request.query_string.decode()
        except UnicodeDecodeError as e:
            raise UsageFault(f"the query string is not UTF-8 (byte {e.start}); percent-encode UTF-8 text") from None

    @app.errorhandler(Fault)
    def _fault(f: Fault):
        from .protocols.errors import dali_error

        return dali_error(f)

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        from .protocols.errors import dali_error

        if e.code == 405:
            return dali_error(UsageFault(f"method {request.method} not allowed on {request.path}", status=405))
        if e.code == 404:
            return dali_error(Fault(f"no resource {request.path}", status=404))
        if e.code == 413:
            return dali_error(
                UsageFault(f"request too large: uploads are limited to {config.uploads.max_bytes} bytes", status=413)
            )
        return dali_error(Fault(e.description or e.name, status=e.code or 500))

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        from .protocols.errors import dali_error

        if isinstance(e, RecursionError):  # only a client's input nests this deep
            return dali_error(UsageFault("the request is nested too deeply to evaluate; simplify it"))
        log.exception("unexpected error on %s", request.path)
        return dali_error(FatalFault(f"internal error ({type(e).__name__}); the incident was logged"))

    return app
