"""``config.yaml``: loading and validation.

Top level: ``service`` (:class:`ServiceConfig`), ``jobs`` (:class:`JobsConfig`), ``uploads``
(:class:`UploadsConfig`) and ``archives`` (name -> section).  Each archive
section is validated by its plugin's own model (``Archive.Config``), selected by ``kind``.
Errors name the exact key path (``archives.demo.tables[0].source``) and what is wrong.
Secrets are never written in the file: a secret field takes ``{env: VARIABLE}`` and is read from
the environment when the config is loaded (:class:`EnvSecret`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
)


class ConfigError(Exception):
    """Configuration is invalid; the message lists every problem with its key path."""


def _env_secret(v: Any) -> Any:
    if isinstance(v, SecretStr):
        return v
    if isinstance(v, dict) and set(v) == {"env"}:
        name = v["env"]
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return SecretStr(os.environ[name])
    raise ValueError("secrets are not written in the config file; use {env: VARIABLE_NAME}")


EnvSecret = Annotated[SecretStr, BeforeValidator(_env_secret)]
"""A secret read from an environment variable: ``password: {env: HSC_PASSWORD}``."""


class ServiceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = "vo-gateway"
    description: str = "IVOA gateway to astronomical archives"
    base_url: AnyHttpUrl | None = Field(None, description="external URL of the service root, if behind a proxy")
    maxrec_default: int = Field(20000, ge=0)
    maxrec_hard: int = Field(10_000_000, ge=1)
    scs_max_sr: float = Field(10.0, gt=0, le=180)
    sia_maxrec: int = Field(10000, ge=1)
    cutout_max_pixels: int = Field(25_000_000, ge=1)
    plugins_blocked: list[str] = Field(default_factory=list, description="entry-point names not to load")
    max_query_length: int = Field(
        1_000_000,
        ge=1000,
        description="characters of ADQL text accepted; longer "
        "queries get a 400 (long value lists belong in a TAP_UPLOAD table)",
    )
    sync_execution_duration: float = Field(
        300,
        gt=0,
        description="seconds a sync TAP query may run before it is stopped with an error pointing to /tap/async",
    )
    compress_level: int = Field(
        1,
        ge=0,
        le=9,
        description="gzip/deflate level of responses to clients that "
        "send Accept-Encoding (RFC 9110 §12.5.3); 1 is fastest, 0 turns compression off",
    )
    log_format: Literal["console", "json"] = Field(
        "console", description="access and application log lines: readable (console) or JSON (json), docs/deployment.md"
    )


class JobsConfig(BaseModel):
    """UWS jobs (``/tap/async``): where job records and results live, who runs them, and the
    limits of UWS 1.1 §2.2.3 (executionDuration, destruction, blocking WAIT)."""

    model_config = ConfigDict(extra="forbid")
    store: str = Field(
        "sqlite:///var/jobs.sqlite",
        description="SQLAlchemy URL of the job store; relative "
        "SQLite paths are relative to the config file; postgresql+psycopg://... to share jobs",
    )
    results_dir: Path = Field(
        Path("var/results"), description="job results and uploads (shared storage when workers run on other hosts)"
    )
    executor: Literal["inprocess", "huey"] = "inprocess"
    queue_url: str | None = Field(None, description="redis://host:port/db for executor: huey")
    workers: int = Field(2, ge=1, le=64, description="threads running jobs in each gateway/worker process")
    execution_duration_default: int = Field(3600, ge=0, description="seconds; 0 = unlimited")
    execution_duration_max: int = Field(14400, ge=1)
    destruction_default: int = Field(7 * 86400, ge=60, description="seconds after creation")
    destruction_max: int = Field(30 * 86400, ge=60)
    wait_max: int = Field(60, ge=1, le=600, description="cap on UWS blocking WAIT, seconds")
    heartbeat: float = Field(2.0, gt=0, le=60, description="seconds between liveness beats of each process")


class UploadsConfig(BaseModel):
    """TAP_UPLOAD limits (TAP 1.1 §2.7.6, DALI 1.1 §3.4.5), declared as TAPRegExt uploadLimit."""

    model_config = ConfigDict(extra="forbid")
    max_bytes: int = Field(20_000_000, ge=1, description="per request (all tables)")
    max_rows: int = Field(1_000_000, ge=1, description="per table")
    max_tables: int = Field(8, ge=1)
    http_timeout: float = Field(30.0, gt=0, description="seconds for fetching an http(s) upload")
    allow_private_hosts: bool = Field(
        False, description="allow http(s) uploads from loopback/private addresses (tests and closed networks only)"
    )


class CacheConfig(BaseModel):
    """The result cache of identical upstream queries (:mod:`gateway.cache`): kept per caller
    (keyed by the owner key, a hash of the credentials), never shared between users."""

    model_config = ConfigDict(extra="forbid")
    ttl: int = Field(600, ge=0, description="seconds a result is reused; 0 turns the cache off")
    dir: Path = Field(
        Path("var/cache"),
        description="cache directory (relative to the config file), shared by the processes of one host",
    )
    max_bytes: int = Field(
        1 << 30, ge=1 << 20, description="size of the whole cache; least recently used entries go first"
    )
    max_entry_bytes: int = Field(64 << 20, ge=1, description="larger results are streamed but not kept")


class PlannerConfig(BaseModel):
    """The federated planner (:mod:`gateway.planner`): queries over several archives, and
    archives that only scan."""

    model_config = ConfigDict(extra="forbid")
    multi_cone_rows: int = Field(
        10_000,
        ge=1,
        description="a crossmatch partner with at most this many rows "
        "(an upload, a fetched sub-query) bounds the other side by one cone per row",
    )
    cone_group_size: float = Field(
        0.05,
        ge=0,
        le=1,
        description="degrees: partner rows closer than about this share one covering cone (one "
        "upstream request instead of one per row; the crossmatch itself stays exact); 0: one cone per row",
    )
    cones_per_query: int = Field(200, ge=1, description="cones OR-ed into one sub-query of an SQL archive")
    keys_per_query: int = Field(
        1000,
        ge=1,
        description="values of one IN list of a join-key lookup (a table "
        "joined on a column to a table fetched before it)",
    )
    max_subquery_rows: int = Field(
        2_000_000,
        ge=1,
        description="rows one sub-query may return; more is an error naming the table, never a silent cut",
    )
    memory_limit: str = Field(
        "512MB", description="DuckDB memory of one query's local evaluation; beyond it, DuckDB spills to temp_directory"
    )
    temp_directory: Path = Field(Path("var/planner"), description="spill directory (relative to the config file)")


def _rate(v: str) -> str:
    from limits import parse

    try:
        parse(v)
    except ValueError:
        raise ValueError(f"{v!r} is not a rate such as '600/minute' or '10 per second'") from None
    return v


Rate = Annotated[str, AfterValidator(_rate)]
Protocol = Literal["tap", "scs", "sia", "sia1", "soda", "datalink", "data"]


class LimitsConfig(BaseModel):
    """Request rates and concurrency caps (docs/deployment.md § Limits)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    storage_url: str = Field(
        "memory://",
        description="where the rate counters live: memory:// (this process) or redis://host:port/db (shared)",
    )
    per_user: dict[Protocol, Rate] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]  # mypy reads the literals as str
            "tap": "600/minute",
            "scs": "1200/minute",
            "sia": "600/minute",
            "sia1": "600/minute",
            "soda": "600/minute",
            "datalink": "1200/minute",
            "data": "600/minute",
        },
        description="requests per caller (owner, or client address when anonymous) to each protocol",
    )
    per_address: Rate | None = Field("6000/minute", description="every request from one client address")
    async_jobs_per_user: int = Field(
        20, ge=1, description="QUEUED or EXECUTING async jobs of one owner (anonymous callers share one pool)"
    )
    upstream_concurrency: int = Field(
        16, ge=1, le=1024, description="requests in flight to one archive's upstream, all users together"
    )


class WebConfig(BaseModel):
    """The browser interface (docs/web.md)."""

    model_config = ConfigDict(extra="forbid")
    hips_url: AnyHttpUrl | None = Field(
        None,
        description="a HiPS survey (HiPS 1.0) shown with Aladin Lite under results that have positions; "
        "unset: no sky view, and no page asks anything of another origin",
    )


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    uploads: UploadsConfig = Field(default_factory=UploadsConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    planner: PlannerConfig = Field(default_factory=PlannerConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    archives: dict[str, dict[str, Any]] = Field(default_factory=dict)
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)
    #: the YAML line of each key path, for error messages (:func:`yaml_lines`)
    yaml_lines: dict[tuple, int] = Field(default_factory=dict, exclude=True, repr=False)


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith(("function-", "constrained-")):
            out += ("." if out else "") + str(part)
    return out


def yaml_lines(text: str) -> dict[tuple, int]:
    """The 1-based line of every key and list item of a YAML document, by key path
    (``("archives", "demo", "kind")``), from PyYAML's node marks; {} for non-mapping roots."""
    lines: dict[tuple, int] = {}

    def walk(node, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = path + (k.value,)
                lines[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                lines[path + (i,)] = v.start_mark.line + 1
                walk(v, path + (i,))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if root is not None:
        walk(root, ())
    return lines


def _fields_at(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """The keys a config model accepts at ``loc`` (for "did you mean")."""
    for part in loc:
        if model is None or isinstance(part, int):
            return []
        field = model.model_fields.get(str(part))
        ann = field.annotation if field is not None else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return list(model.model_fields) if model is not None else []


def format_validation_error(
    e: ValidationError,
    prefix: str = "",
    lines: dict[tuple, int] | None = None,
    model: type[BaseModel] | None = None,
) -> str:
    """One line per problem: the key path, the YAML line when known (``lines`` from
    :func:`yaml_lines`, keyed from the document root, so including ``prefix``), what is wrong,
    and for an unknown key the closest accepted one (``model``: the model validated)."""
    import difflib

    out = []
    base = tuple(p for p in prefix.split(".") if p) if prefix else ()
    for err in e.errors():
        loc = tuple(err["loc"])
        where = _loc(loc)
        where = f"{prefix}.{where}" if prefix and where else (prefix or where)
        full = base + loc
        line = next(((lines or {}).get(full[:n]) for n in range(len(full), 0, -1) if (lines or {}).get(full[:n])), None)
        at = f" (line {line})" if line else ""
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _fields_at(model, loc[:-1]), n=1, cutoff=0.6)
            out.append(f"{where}{at}: unknown key" + (f"; did you mean {close[0]!r}?" if close else ""))
        elif err["type"] == "missing":
            out.append(f"{where}{at}: required field is missing")
        else:
            out.append(f"{where}{at}: {err['msg']}")
    return "\n".join(out)


def load_config(path: str | os.PathLike | None = None, data: dict | None = None) -> GatewayConfig:
    """Read and validate the top level of ``config.yaml`` (archive sections are validated when
    the app is built, by each archive's plugin).  Raises :class:`ConfigError`."""
    lines: dict[tuple, int] = {}
    if data is None:
        p = Path(path or os.environ.get("VO_GATEWAY_CONFIG", "config.yaml"))
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found")
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            what = " ".join(x for x in (getattr(e, "problem", None), getattr(e, "context", None)) if x) or str(e)
            raise ConfigError(f"{p}{where}: not valid YAML: {what}")
        lines = yaml_lines(text)
        base = p.resolve().parent
    else:
        base = Path.cwd()
    if not isinstance(data, dict):
        raise ConfigError("config: the top level must be a mapping")
    if data.get("base_dir") is not None:  # relative paths of the file resolve against this directory
        base = (base / str(data["base_dir"])).resolve()
    problems = []
    try:
        cfg = GatewayConfig.model_validate({**data, "base_dir": base, "yaml_lines": lines})
    except ValidationError as e:
        problems.append(format_validation_error(e, lines=lines, model=GatewayConfig))
        cfg = None
    for name, section in (data.get("archives") or {}).items() if isinstance(data.get("archives"), dict) else ():
        at = f" (line {lines[('archives', name)]})" if ("archives", name) in lines else ""
        if not isinstance(section, dict):
            problems.append(f"archives.{name}{at}: must be a mapping")
        elif "kind" not in section:
            problems.append(f"archives.{name}.kind{at}: required field is missing")
    if problems or cfg is None:
        raise ConfigError("\n".join(problems))
    return cfg
