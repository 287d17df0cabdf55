"""The ``Archive`` base class: everything the gateway knows about one upstream.

One :class:`Archive` object exists per ``archives:`` entry of ``config.yaml``; its class comes
from a plugin (``gateway_register_archives``) and is selected by the entry's ``kind``.  An
archive owns upstream knowledge only (no Flask, no HTTP policy):

* :meth:`tables` — declared tables (the source of TAP_SCHEMA, ``/tables``, result FIELDs);
* :attr:`capabilities` — what it can push down (the planner and TAPRegExt read this);
* :meth:`translate` / :meth:`execute` — validated ADQL -> native request -> :class:`RowStream`
  (SQL upstreams, ``capabilities.adql``), or :meth:`scan` — a :class:`ScanRequest` -> rows;
* optional :meth:`cone_search` (SCS), :meth:`image_search` (SIA), :meth:`cutout` (SODA,
  a :class:`CutoutRequest` in, a :class:`Cutout` out);
* :meth:`availability` — VOSI availability probe.

Writing one is described in ``docs/writing_an_archive.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from .faults import TransientFault, UsageFault
from .rowstream import RowStream
from .schema import Table


class ArchiveConfig(BaseModel):
    """Base of every archive's config model.  Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
    kind: str
    title: str | None = None
    description: str | None = None
    max_concurrency: int = Field(
        8,
        ge=1,
        le=64,
        description="requests the planner sends to this archive at once (one per target of a multi-cone)",
    )


@dataclass(frozen=True)
class Capabilities:
    """What an archive evaluates natively; the planner (:mod:`gateway.planner`) reads it.

    Queries, one of two ways (``docs/writing_an_archive.md``):

    * ``adql``: :meth:`Archive.translate` / :meth:`Archive.execute` take a validated ADQL query
      over this archive's tables (an SQL upstream: DuckDB, an upstream TAP, HSC's PostgreSQL).
      A query on this archive alone is passed whole; in a query over several archives it gets
      one sub-query per table reference (columns, pushed conditions, cones).
    * otherwise :meth:`Archive.scan` takes a :class:`ScanRequest`, with the parts that the
      following flags allow: ``cone`` (``ScanRequest.cone``), ``comparisons``
      (``ScanRequest.predicates``), ``column_selection`` (``ScanRequest.columns``; else every
      column is asked for), ``order_by`` and ``top`` (``ScanRequest.order`` / ``limit``, only for
      a query the scan answers exactly).  ``bounded``: a scan needs a cone or an ``=``/``IN``
      condition on the table's id column (the planner refuses the query otherwise, naming the
      predicate to add); a request with a ``limit`` and nothing else asks for any rows.

    The gateway evaluates the rest (joins, expressions, grouping, ordering) exactly over the
    rows the archive returns."""

    adql: bool = False
    cone: bool = False
    comparisons: bool = False
    column_selection: bool = False
    order_by: bool = False
    top: bool = False
    bounded: bool = False
    images: bool = False
    uploads: bool = False  # adql archives: can join TAP_UPLOAD tables (AdqlQuery.uploads) in translate/execute
    upload_rows: int | None = None  # most rows of TAP_UPLOAD tables one query may carry (None: no limit)
    datalink_proxy: bool = False  # answers DataLink for the dataset IDs it claims, proxies SODA
    soda_async: bool = False  # SODA async jobs at /soda/{name}/async (Archive.soda_job)
    set_operations: bool = False  # adql archives: top-level UNION [ALL] / EXCEPT / INTERSECT (ADQL 2.1 §2.2.4)
    common_tables: bool = False  # adql archives: WITH name AS (SELECT ...) (ADQL 2.1 §2.2.5)
    geometry_functions: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Predicate:
    """One condition of a :class:`ScanRequest`: ``column op value`` with ``op`` one of ``=``,
    ``!=``, ``<``, ``<=``, ``>``, ``>=`` (``value`` a number or string), ``IN`` (``value`` a
    tuple) or ``LIKE`` (``value`` an SQL pattern, ``%`` and ``_``).  NULL never matches."""

    column: str
    op: str
    value: Any


@dataclass
class ScanRequest:
    """The rows of one table the planner asks of a scanning archive (:meth:`Archive.scan`).

    ``columns``: declared column names wanted (the answer may hold more); ``cone``: only rows
    within it are needed (ICRS degrees, on the table's ``ra_column``/``dec_column``);
    ``predicates``: AND-ed conditions the rows need to meet; ``order``: ``[(column,
    descending)]``; ``limit``: the first ``limit`` rows in that order are enough.  Returning
    more rows than asked is allowed (the gateway re-checks every condition); returning fewer
    is not: an upstream cap that cuts the answer raises, or sets ``RowStream.overflow``."""

    table: Table
    columns: list[str]
    cone: Cone | None = None
    predicates: list[Predicate] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)
    limit: int | None = None

    def describe(self) -> str:
        """One line for ``vo-gateway explain``."""
        parts = [f"scan {self.table.qualified_name} columns=[{', '.join(self.columns)}]"]
        if self.cone is not None:
            parts.append(f"cone=({self.cone.ra:.6g}, {self.cone.dec:.6g}, r={self.cone.radius:.6g} deg)")
        parts += [f"{p.column} {p.op} {p.value!r}" for p in self.predicates]
        if self.order:
            parts.append("order=" + ", ".join(c + (" DESC" if d else "") for c, d in self.order))
        if self.limit is not None:
            parts.append(f"limit={self.limit}")
        return " ".join(parts)


@dataclass(frozen=True)
class Udf:
    """An ADQL user-defined function an archive evaluates (ADQL 2.1 §2.4.2), declared in
    TAPRegExt ``languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-udf"``
    (TAPRegExt 1.0 §2.3): ``form`` is its signature (``name(arg TYPE, ...) -> TYPE``), one
    per arity; a query using it runs only on the archives that declare it."""

    name: str
    form: str
    description: str


@dataclass(frozen=True)
class CutoutRequest:
    """A SODA sync request (SODA 1.0 §3.3) for one dataset: ``id`` as the client gave it,
    ``region`` the one POS/CIRCLE/POLYGON shape as :func:`gateway.dali.parse_shape` gives it
    (None when the request has none), and ``params``, every ``(NAME, value)`` of the request
    with names upper-case, for an archive's own parameters (HSC's ``TRACT``, ``PATCH``)."""

    id: str
    region: tuple | None
    params: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Cutout:
    """A cutout: ``chunks`` of the body (FITS unless ``content_type`` says otherwise), with the
    ``filename`` a client saves it under."""

    chunks: Iterable[bytes]
    content_type: str = "application/fits"
    filename: str | None = None


@dataclass(frozen=True)
class Link:
    """One row of a DataLink ``{links}`` table (DataLink 1.1 §3.2): ``id`` the input ID,
    ``semantics`` a term of the DataLink vocabulary (``#this``, ``#preview``, ``#cutout``,
    ``#auxiliary``, ...), and one of ``access_url``, ``service_def`` (the ID of a service
    descriptor: ``"soda"``/``"soda-async"`` for the archive's SODA) or ``error_message``
    (DataLink 1.1 §3.2.4, starting with a fault name such as ``NotFoundFault:``).
    ``content_length`` in bytes."""

    id: str
    semantics: str = "#this"
    access_url: str | None = None
    service_def: str | None = None
    error_message: str | None = None
    description: str | None = None
    content_type: str | None = None
    content_length: int | None = None


@dataclass
class Links:
    """What :meth:`Archive.links` answers: the rows, and service descriptors their
    ``service_def`` names besides the archive's SODA (VOTable ``RESOURCE type="meta"`` text,
    DataLink 1.1 §4, e.g. an upstream's own)."""

    rows: list[Link]
    descriptors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Cone:
    """A cone in ICRS degrees: centre ``ra``, ``dec``; ``radius`` > 0 (SCS ``SR``)."""

    ra: float
    dec: float
    radius: float


@dataclass
class ImageQuery:
    """SIA 2.0 constraints (SIA 2.0 §2.1): each a list whose values are OR-ed.

    ``pos``: ``("circle", ra, dec, r)``, ``("range", ra1, ra2, dec1, dec2)`` or
    ``("polygon", ra1, dec1, ...)`` in degrees; ``band`` in metres, ``time`` in MJD,
    ``fov`` in degrees, ``exptime`` in seconds: ``(lo, hi)`` intervals.  Strings match exactly
    except ``id`` (case-insensitive)."""

    pos: list[tuple] = field(default_factory=list)
    band: list[tuple[float, float]] = field(default_factory=list)
    time: list[tuple[float, float]] = field(default_factory=list)
    pol: list[str] = field(default_factory=list)
    fov: list[tuple[float, float]] = field(default_factory=list)
    spatres: list[tuple[float, float]] = field(default_factory=list)
    exptime: list[tuple[float, float]] = field(default_factory=list)
    timeres: list[tuple[float, float]] = field(default_factory=list)
    specrp: list[tuple[float, float]] = field(default_factory=list)
    id: list[str] = field(default_factory=list)
    collection: list[str] = field(default_factory=list)
    facility: list[str] = field(default_factory=list)
    instrument: list[str] = field(default_factory=list)
    dptype: list[str] = field(default_factory=list)
    calib: list[int] = field(default_factory=list)
    target: list[str] = field(default_factory=list)
    format: list[str] = field(default_factory=list)
    maxrec: int | None = None
    #: SIA 1.0 §4.1 INTERSECT for a query from ``/sia1``: COVERS, ENCLOSED, CENTER or OVERLAPS
    #: (SIA 2.0 POS always means OVERLAPS); archives whose upstream takes it pass it on
    intersect: str = "OVERLAPS"


class Archive:
    """Base class for archive plugins.  Subclasses set ``kind`` and ``Config``."""

    kind: ClassVar[str]
    Config: ClassVar[type[ArchiveConfig]] = ArchiveConfig
    capabilities: Capabilities = Capabilities()
    #: PARAM elements of this archive's own SODA parameters, added to the ``inputParams`` of its
    #: SODA service descriptors in DataLink answers (DataLink 1.1 §4.1)
    soda_params: ClassVar[str] = ""

    def __init__(self, name: str, config: ArchiveConfig, *, base_dir: Path):
        self.name = name
        self.config = config
        self.base_dir = base_dir

    # -- metadata -------------------------------------------------------------------------
    def tables(self) -> list[Table]:
        """Declared tables, each with fully described columns."""
        raise NotImplementedError

    def udfs(self) -> list[Udf]:
        """The ADQL user-defined functions this archive's ``translate`` handles (:class:`Udf`)."""
        return []

    def examples(self) -> dict[str, tuple[str, str, str, list[str]]]:
        """DALI examples of this archive's typical use: key -> (name, description, ADQL,
        tables read); added to ``/tap/examples`` (TAP 1.1 §2.6)."""
        return {}

    def cone_tables(self) -> list[Table]:
        """Positional tables served by cone search only (an upstream SCS): offered at
        ``/scs/{schema.table}``, not in TAP_SCHEMA and not queryable by ADQL."""
        return []

    @property
    def title(self) -> str:
        return self.config.title or self.name

    # -- queries --------------------------------------------------------------------------
    def translate(self, query: Any) -> Any:
        """Turn a validated :class:`gateway.adql.AdqlQuery` into this archive's native request.
        Raise :class:`UsageFault` naming any construct the archive cannot evaluate."""
        raise UsageFault(f"archive {self.name} does not accept ADQL queries")

    def execute(self, native: Any, maxrec: int | None, top: int | None = None, context=None) -> RowStream:
        """Run a native request; deliver at most ``maxrec`` rows and set ``overflow`` when more
        existed (fetch ``maxrec + 1``).  ``maxrec`` None means no limit.  ``context`` is a
        :class:`gateway.uws.executor.JobContext`: ``context.job_id`` is set inside a UWS job
        (None for sync); ``context.actor`` is the caller (with in-memory ``credentials`` when
        given); register ``context.on_cancel`` to stop upstream work on ABORT."""
        raise NotImplementedError

    def scan(self, request: ScanRequest, context=None) -> RowStream:
        """The rows of ``request.table`` a :class:`ScanRequest` asks for, for an archive
        without ``capabilities.adql``: the request holds only what the capabilities allow.
        ``context`` as for :meth:`execute` (the caller's credentials, cancellation).  Raises
        UsageFault for a request the upstream refuses (a cone beyond its limit), TransientFault
        for upstream failures, with the upstream's message."""
        raise UsageFault(f"archive {self.name} does not accept ADQL queries")

    def scan_batches(self, request: ScanRequest, context=None, hint: str = "narrow the query") -> list:
        """Every batch of :meth:`scan`, read to its end.  Raises TransientFault when the archive
        reports a failure, or cut its answer at an upstream row limit (``hint`` says what the
        user can do): a cut answer is never passed on as a whole one."""
        answer = self.scan(request, context)
        batches = list(answer)
        what = request.table.qualified_name
        if answer.error:
            raise TransientFault(f"archive {self.name} failed while answering {what}: {answer.error}")
        if answer.overflow:
            raise TransientFault(f"archive {self.name} cut its answer for {what} short (an upstream row limit); {hint}")
        return batches

    def datalink_column(self, table: Table) -> str | None:
        """The column of ``table`` whose values are the IDs of this archive's DataLink service
        (``/datalink/{name}/links``), for the service descriptor of a query result."""
        return None

    def result_key(self, native: Any) -> str | None:
        """This archive's text of the native request ``native`` (from :meth:`translate`) for
        the result cache (:mod:`gateway.cache`): two equal texts must mean the same answer
        from the upstream for the same caller.  None (the default): results are not cached,
        right for archives whose rows are local and fast."""
        return None

    def cone_search(self, table: Table, cone: Cone, maxrec: int | None, verb: int) -> RowStream:
        """SCS on a positional ``table``; rows within ``cone`` (SCS 1.03 §2).  ``verb`` 1..3
        selects the columns (1: id/ra/dec, 2: principal columns, 3: all).

        The default serves archives that scan with cones (``capabilities.cone``): one
        :meth:`scan` for the cone and the VERB's columns (plus ra/dec), the rows re-checked
        against the cone on the sphere (a scan may return more), at most ``maxrec`` of them
        (``overflow`` set when more exist)."""
        if not self.capabilities.cone or self.capabilities.adql:
            raise UsageFault(f"archive {self.name} has no cone search")
        import numpy as np
        import pyarrow as pa

        from .engine import scs_columns
        from .rowstream import limit_batches
        from .sky import separation

        cols = scs_columns(table, verb)
        wanted = [c.name for c in cols]
        pos = [n for n in (table.ra_column, table.dec_column) if n]
        limit = maxrec + 1 if maxrec is not None and self.capabilities.top else None
        columns = (
            list(dict.fromkeys(wanted + pos)) if self.capabilities.column_selection else [c.name for c in table.columns]
        )
        batches = self.scan_batches(ScanRequest(table, columns, cone, limit=limit), hint="ask for a smaller cone")
        out = RowStream(cols, [])
        # the scan stopped at ``limit`` rows: more may exist even if the cone check drops some
        out.overflow = limit is not None and sum(b.num_rows for b in batches) >= limit
        kept = []
        for b in batches:
            names = {n.lower(): n for n in b.schema.names}
            ra = b.column(names[pos[0].lower()]).to_numpy(zero_copy_only=False).astype(float)
            dec = b.column(names[pos[1].lower()]).to_numpy(zero_copy_only=False).astype(float)
            inside = np.asarray(separation(ra, dec, cone.ra, cone.dec) <= cone.radius)
            b = b.filter(pa.array(inside))
            kept.append(pa.RecordBatch.from_arrays([b.column(names[n.lower()]) for n in wanted], names=wanted))
        out.batches = limit_batches(kept, maxrec, out)
        return out

    def image_search(self, query: ImageQuery) -> RowStream:
        """SIA: ObsCore-described images matching ``query`` (SIA 2.0 §2)."""
        raise UsageFault(f"archive {self.name} has no images")

    def image_collections(self) -> list[str] | None:
        """The ObsCore ``obs_collection`` values of this archive's images, when it knows them
        without a query (SIA 2.0 ``COLLECTION`` skips archives with none of the asked ones);
        None: ask :meth:`image_search`."""
        return None

    def image_records(self) -> list[dict]:
        """ObsCore records (dicts keyed by ObsCore column names, plus ``_footprint``: the
        corner list ``[(ra, dec), ...]`` and ``_band``) of all images."""
        return []

    def image_file(self, image_id: str):
        """Local path of the full dataset for ``image_id`` (publisher DID or obs_id)."""
        raise UsageFault(f"archive {self.name} has no images")

    def cutout(self, request: CutoutRequest, context=None) -> Cutout | None:
        """One SODA sync cutout (SODA 1.0 §3) of a dataset this archive serves: its own images
        (``image_records``) or the IDs it ``claims``.  ``context`` is a
        :class:`gateway.uws.executor.JobContext` (``context.actor`` with the caller's
        credentials).  Returns None when the region holds no data (SODA 1.0 §3.3: 204).  Raises
        UsageFault for bad input (:class:`gateway.faults.MultiValuedFault` for a request that
        needs SODA async), TransientFault for upstream failures with the upstream's message."""
        raise UsageFault(f"archive {self.name} has no cutout service")

    # -- DataLink / SODA of an upstream (capabilities.datalink_proxy) ------------------------
    def claims(self, dataset_id: str) -> bool:
        """Whether this archive answers DataLink for ``dataset_id`` (e.g. by ID prefix)."""
        return False

    def links(self, ids: list[str], context) -> Links:
        """DataLink 1.1 (§3) for dataset IDs this archive ``claims``: one or more :class:`Link`
        per ID (an ID it cannot answer gets a Link with ``error_message``).  ``context`` is a
        :class:`gateway.uws.executor.JobContext`: ``context.actor`` (with credentials) and
        ``context.service_url``, the gateway's external root (its TAP is
        ``{service_url}/tap``).  A link with ``service_def="soda"`` (or ``"soda-async"``) names
        this archive's SODA service at ``/soda/{name}/sync`` (``/async``), whose descriptor the
        gateway writes, with :attr:`soda_params`.  Raises TransientFault for upstream failures."""
        raise UsageFault(f"archive {self.name} has no DataLink service")

    def soda_job(self, params: list[tuple[str, str]], context, job_dir) -> list:
        """Run one SODA async job (SODA 1.0 §3.1, ``capabilities.soda_async``): ``params`` are
        the job's (NAME, value) pairs, names upper-case, multi-valued ``ID``/``POS``/``CIRCLE``
        kept in order; ``context`` is the :class:`gateway.uws.executor.JobContext` (``actor``
        with the caller's credentials, ``check()``, ``on_cancel()``); files go in ``job_dir``.
        Returns :class:`gateway.uws.job.Result` entries, one per combination of the
        multi-valued inputs (SODA-05); a combination without data gets a ``text/plain``
        result starting ``Error``.  Raises UsageFault for bad input, TransientFault for
        upstream failures (the job goes to ERROR with that message)."""
        raise UsageFault(f"archive {self.name} has no asynchronous cutout service")

    def availability(self) -> tuple[bool, str]:
        """(available, note) for VOSI availability (VOSI 1.1 §3.3)."""
        return True, f"{self.name}: ok"

    def close(self) -> None:
        """Release resources (connections, files)."""
