"""The federated planner: one ADQL query over the tables of any archives (and TAP_UPLOAD).

A query whose tables all belong to one archive that evaluates ADQL (``Capabilities.adql``:
DuckDB, an upstream TAP, HSC's PostgreSQL) is passed to that archive whole, as before.  Every
other query is planned here (``docs/planner.md``):

1. **References.**  Each table reference of the validated AST (``FROM``/``JOIN`` of every
   SELECT, subqueries and WITH queries included) is assigned to its archive; TAP_UPLOAD tables
   are local.  The columns each reference needs are collected.
2. **Pushdown.**  A condition of one SELECT's ``WHERE`` (or of an inner ``JOIN ... ON``) that
   reads one reference only is given to it: to an SQL archive as ADQL (and then evaluated
   there only); to a scanning archive as a cone (``CONTAINS(POINT, CIRCLE)=1``, ``DISTANCE <
   r``) or a :class:`~gateway.archive.Predicate` when its capabilities take them (re-checked
   here).  The null-supplying side of an outer join takes only the conditions of its own ON.
3. **Bounds through crossmatches.**  ``DISTANCE(POINT(a..), POINT(b..)) < r`` and
   ``CONTAINS(POINT(a..), CIRCLE(b.ra, b.dec, r)) = 1`` (2- or 4-argument forms, constant r)
   link two references.  A side without its own cone is fetched after its partner: with one
   cone of radius r around each partner row when the partner has at most
   ``planner.multi_cone_rows`` rows (an upload, a small result), else with the partner's cone
   widened by r.  Both are exact on the sphere (the triangle inequality), at the poles and
   across RA 0/360, because every cone is tested with the haversine distance.
4. **Fetch.**  The references of one stage are fetched concurrently, each archive's requests
   bounded by its ``max_concurrency``: SQL archives get ADQL sub-queries (cones OR-ed,
   ``planner.cones_per_query`` at a time; a DuckDB archive gets the cones as a TAP_UPLOAD
   table), scanning archives one :class:`~gateway.archive.ScanRequest` per cone.  Where cones
   are sent one at a time (scans, OR-ed sub-queries), cones closer than
   ``planner.cone_group_size`` share one covering cone.
5. **Local evaluation.**  The fetched rows are registered in a per-query DuckDB (spilling to
   ``planner.temp_directory`` beyond ``planner.memory_limit``), where the whole query (joins,
   residual WHERE, GROUP BY/HAVING, DISTINCT, set operations, ORDER BY, TOP, OFFSET) runs; its
   result streams to the writers like any other.

Faults: a reference that needs a bound and has none is a 400 naming the table and the
predicate to add; a sub-query cut by an upstream cap or by ``planner.max_subquery_rows`` is an
error, never a complete answer; an upstream failure fails the query with the archive's name
and the upstream's message.  :meth:`Plan.explain` says which archive gets which request and
why (``vo-gateway explain``, the ``jobInfo`` of an async job).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from .adql.dialect import ADQL
from .adql.validate import AdqlQuery
from .archive import Archive, ArchiveConfig, Cone, Predicate, ScanRequest
from .engine import DuckDBArchive
from .faults import TransientFault, UsageFault, naming_archive
from .residual import cone_forms, cone_term, conjuncts, constant
from .rowstream import RowStream
from .schema import Column, Table
from .sky import covering_cones

log = logging.getLogger("gateway.planner")
UPLOAD = "tap_upload"
COMPARE: dict[type[exp.Expression], str] = {
    exp.EQ: "=",
    exp.NEQ: "!=",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}
FLIP = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


# -- the query's references ------------------------------------------------------------------
@dataclass(eq=False)
class Ref:
    """One table reference of the query and what is known of the rows it needs."""

    index: int
    node: exp.Table
    archive: str
    table: Table
    alias: str
    select: exp.Select
    nullable: bool = False  # the null-supplying side of an outer join
    columns: dict[str, None] = field(default_factory=dict)  # declared names needed, in query order
    pushed: list[exp.Expression] = field(default_factory=list)  # conditions given to it as ADQL
    cones: list[Cone] = field(default_factory=list)  # its own constant cones (AND-ed)
    predicates: list[Predicate] = field(default_factory=list)
    exact: bool = True  # every condition of its SELECT was pushed to it, exactly (order/limit pushdown)
    matches: list[Match] = field(default_factory=list)  # crossmatches that can bound it
    keys: list[KeyMatch] = field(default_factory=list)  # equi-joins that can bound it

    @property
    def label(self) -> str:
        return f"{self.table.qualified_name} AS {self.alias}"

    @property
    def view(self) -> str:
        return f"gw_ref_{self.index}"


@dataclass(eq=False)
class Match:
    """A crossmatch condition that bounds ``target`` from ``source``: target's position within
    ``radius`` degrees of source's (``source_pos``: its ra/dec column names)."""

    target: Ref
    source: Ref
    source_pos: tuple[str, str]
    radius: float


@dataclass(eq=False)
class KeyMatch:
    """An equi-join ``target.column = source.source_column`` that bounds ``target`` once
    ``source`` is fetched: ``column IN (the source's values)``."""

    target: Ref
    source: Ref
    column: str
    source_column: str


@dataclass(eq=False)
class Step:
    """How one reference's rows are fetched: ``how`` is ``upload``, ``query`` (ADQL
    sub-queries of an SQL archive) or ``scan``; ``after``: the match whose source is fetched
    first (multi-cone or widened cone, or a join-key lookup), else None."""

    ref: Ref
    how: str
    after: Match | KeyMatch | None = None
    why: str = ""
    requests: list[str] = field(default_factory=list)  # what was sent (filled while running)
    rows: int | None = None
    finished: float | None = None  # time.monotonic() when its rows were all fetched


@dataclass
class Progress:
    """Progress of a federated query, read by the UWS job document's ``jobInfo``."""

    total: int = 0
    done: int = 0
    rows: int = 0
    waiting_on: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def as_dict(self) -> dict:
        with self.lock:
            return {
                "subqueries_done": self.done,
                "subqueries_total": self.total,
                "rows_fetched": self.rows,
                "waiting_on": sorted(self.waiting_on),
            }


class Plan:
    """A planned federated query: its :class:`Step` s in stages, and the local query."""

    def __init__(self, query: AdqlQuery, tree: exp.Expression, stages: list[list[Step]], gateway):
        self.query = query
        self.tree = tree
        self.stages = stages
        self.gw = gateway
        self.progress = Progress()

    @property
    def steps(self) -> list[Step]:
        return [s for stage in self.stages for s in stage]

    def explain(self) -> dict:
        """The plan as JSON-ready data: per step the archive, the native request(s) (once run),
        and why; then what runs locally."""
        out = []
        for i, stage in enumerate(self.stages):
            for s in stage:
                d = {"stage": i + 1, "table": s.ref.label, "archive": s.ref.archive, "fetch": s.how, "why": s.why}
                if s.how == "query":
                    d["adql"] = _subquery_text(s.ref, None)
                if s.requests:
                    d["requests"] = s.requests[:20] + (
                        [f"... {len(s.requests) - 20} more"] if len(s.requests) > 20 else []
                    )
                if s.rows is not None:
                    d["rows"] = s.rows
                out.append(d)
        return {
            "federated": True,
            "steps": out,
            "local": "DuckDB over the fetched rows: " + self.tree.sql(dialect=ADQL),
        }


# -- analysis ------------------------------------------------------------------------------
def _direct_refs(sel: exp.Select) -> list[tuple[exp.Table, bool]]:
    """(table node, null-supplying) of a SELECT's FROM and JOIN items that are tables."""
    from_ = sel.args.get("from_") or sel.args.get("from")
    items: list[tuple[exp.Expression, bool]] = [(from_.this, False)] if from_ is not None else []
    joins = sel.args.get("joins") or []
    for j in joins:
        side = (j.args.get("side") or "").upper()
        if side in ("RIGHT", "FULL"):
            items = [(n, True) for n, _ in items]
        items.append((j.this, side in ("LEFT", "FULL")))
    return [(n, nul) for n, nul in items if isinstance(n, exp.Table) and "gw_table" in n.meta]


def _enclosing_select(node: exp.Expression) -> exp.Select | None:
    p = node.parent
    while p is not None and not isinstance(p, exp.Select):
        p = p.parent
    return p


def _merged_columns(sel: exp.Select, local: list[Ref]) -> None:
    """``JOIN ... USING (c)`` and ``NATURAL JOIN`` (ADQL 2.1 §2.2.1) join on columns the query
    need not name: each table of the join fetches them (for NATURAL, every column name two of
    its tables share), so the local engine joins the fetched rows on the same columns."""
    joins = sel.args.get("joins") or []
    names = {i.name.lower() for j in joins for i in j.args.get("using") or []}
    if any(j.args.get("method") == "NATURAL" for j in joins):
        counts = Counter(c.name.lower() for r in local for c in r.table.columns)
        names |= {n for n, k in counts.items() if k > 1}
    for r in local:
        for c in r.table.columns:
            if c.name.lower() in names:
                r.columns.setdefault(c.name)


def find_refs(tree: exp.Expression) -> tuple[list[Ref], dict[int, dict[str, Ref]]]:
    """Every table reference (in tree order) and, per SELECT (by id), its alias -> Ref."""
    refs: list[Ref] = []
    scopes: dict[int, dict[str, Ref]] = {}
    for sel in tree.find_all(exp.Select):
        for node, nullable in _direct_refs(sel):
            ref = Ref(
                len(refs), node, node.meta["gw_archive"], node.meta["gw_table"], node.alias_or_name, sel, nullable
            )
            refs.append(ref)
            scopes.setdefault(id(sel), {})[ref.alias.lower()] = ref
    refs.sort(key=lambda r: r.index)
    return refs, scopes


def owner(col: exp.Column, scopes: dict[int, dict[str, Ref]]) -> Ref | None:
    """The reference a resolved column belongs to (the validator qualified every column with
    its source's alias): the nearest enclosing SELECT with that alias."""
    alias = (col.table or "").lower()
    sel = _enclosing_select(col)
    while sel is not None:
        hit = scopes.get(id(sel), {}).get(alias)
        if hit is not None:
            return hit
        sel = _enclosing_select(sel)
    return None


def _refs_of(cond: exp.Expression, scopes) -> set | None:
    """The references a condition reads; None if it reads anything else (a derived table's
    column, an output alias) or holds a subquery."""
    if cond.find(exp.Select, exp.Subquery, exp.Exists) is not None:
        return None
    out = set()
    for col in cond.find_all(exp.Column):
        ref = owner(col, scopes)
        if ref is None:
            return None
        out.add(ref)
    return out


def _pair_cols(args, scopes) -> tuple[Ref, tuple[str, str]] | None:
    """(ref, (a, b)) of two plain columns of one reference (nodes left where they are)."""
    if len(args) != 2 or not all(isinstance(a, exp.Column) for a in args):
        return None
    owners = {owner(a, scopes) for a in args}
    ref = owners.pop() if len(owners) == 1 else None
    return (ref, (args[0].name, args[1].name)) if ref is not None else None


def crossmatch(cond: exp.Expression, scopes) -> tuple[tuple, tuple, float] | None:
    """((ref_a, pos_a), (ref_b, pos_b), radius) of a crossmatch condition between two
    references: ``DISTANCE(POINT(a), POINT(b)) < r`` (or ``<=``, 4-argument DISTANCE, ``r >
    DISTANCE``) or ``CONTAINS(POINT(a), CIRCLE(b.ra, b.dec, r)) = 1`` with constant r
    (:func:`gateway.residual.cone_forms`)."""
    forms = cone_forms(cond)
    if not forms:
        return None
    mine, other, radius = forms[0]
    a, b = _pair_cols(mine, scopes), _pair_cols(other, scopes)
    try:
        r = float(constant(radius))
    except (ValueError, TypeError, duckdb.Error):
        return None
    if a is None or b is None or a[0] is b[0] or not r >= 0:
        return None
    return a, b, r


def _equi_join(cond: exp.Expression, scopes):
    """((ref_a, column), (ref_b, column)) of ``a.x = b.y`` between two references (plain
    declared columns), else None."""
    if not (isinstance(cond, exp.EQ) and isinstance(cond.this, exp.Column) and isinstance(cond.expression, exp.Column)):
        return None
    a, b = owner(cond.this, scopes), owner(cond.expression, scopes)
    if a is None or b is None or a is b:
        return None
    ca, cb = a.table.column(cond.this.name), b.table.column(cond.expression.name)
    if ca is None or cb is None:
        return None
    return (a, ca.name), (b, cb.name)


def predicate(cond: exp.Expression, ref: Ref) -> Predicate | None:
    """The :class:`Predicate` of a simple condition on one column of ``ref``: comparison with a
    constant, ``IN`` (constants), ``LIKE`` (no ESCAPE), ``BETWEEN`` gives two (see caller)."""
    try:
        if type(cond) in COMPARE:
            op = COMPARE[type(cond)]
            left, right = cond.this, cond.expression
            if not isinstance(left, exp.Column):
                left, right, op = right, left, FLIP[op]
            if not isinstance(left, exp.Column):
                return None
            value = constant(right)
            col = ref.table.column(left.name)
            if (
                value is None
                or col is None
                or col.datatype == "boolean"
                or (col.datatype == "char") != isinstance(value, str)
            ):
                return None
            return Predicate(col.name, op, value)
        if isinstance(cond, exp.In) and not cond.args.get("query") and isinstance(cond.this, exp.Column):
            values = tuple(constant(v) for v in cond.expressions)
            col = ref.table.column(cond.this.name)
            if col is None or any(v is None for v in values) or col.datatype == "boolean":
                return None
            return Predicate(col.name, "IN", values)
        if isinstance(cond, exp.Like) and isinstance(cond.this, exp.Column) and not cond.args.get("escape"):
            value = constant(cond.expression)
            col = ref.table.column(cond.this.name)
            if col is None or col.datatype != "char" or not isinstance(value, str):
                return None
            return Predicate(col.name, "LIKE", value)
    except (ValueError, TypeError, duckdb.Error):
        return None
    return None


def _cond_items(sel: exp.Select):
    """(condition, source, null-supplying ref node or None) of a SELECT: WHERE conjuncts, and
    the ON conjuncts of its joins with the table node the join brings in."""
    where = sel.args.get("where")
    for c in conjuncts(where.this) if where is not None else ():
        yield c, "where", None
    for j in sel.args.get("joins") or []:
        on = j.args.get("on")
        side = (j.args.get("side") or "").upper()
        for c in conjuncts(on) if on is not None else ():
            yield c, side or "inner", j.this


class Planner:
    """Plans and runs queries over several archives (module docstring).  One per gateway."""

    def __init__(self, gateway):
        self.gw = gateway
        self.config = gateway.config.planner

    # -- whole-query pushdown ---------------------------------------------------------------
    def single_archive(self, q: AdqlQuery) -> Archive | None:
        """The archive that runs ``q`` whole, or None when the query must be planned here: its
        tables all belong to one ``adql`` archive that has every feature the query uses
        (uploads, set operations, WITH)."""
        names = q.archives - {UPLOAD}
        if len(names) > 1:
            return None
        archive = self.gw.catalogue.archives[next(iter(names)) if names else "tap_schema"]
        caps = archive.capabilities
        if not caps.adql or (UPLOAD in q.archives and not caps.uploads):
            return None
        if caps.upload_rows is not None and sum(u.data.num_rows for u in (q.uploads or {}).values()) > caps.upload_rows:
            return None  # planned: the upload is split into sub-queries the archive takes
        if not isinstance(q.ast, exp.Select) and not caps.set_operations:
            return None
        if q.with_queries and not caps.common_tables:
            return None
        return archive

    # -- planning ----------------------------------------------------------------------------
    def plan(self, q: AdqlQuery) -> Plan:
        """The :class:`Plan` of a validated query.  Raises UsageFault for a reference that
        cannot be bounded, or a construct no archive here evaluates."""
        tree = q.ast.copy()
        refs, scopes = find_refs(tree)
        archives = self.gw.catalogue.archives
        for col in tree.find_all(exp.Column):
            ref = owner(col, scopes)
            if ref is not None:
                declared = ref.table.column(col.name)
                ref.columns.setdefault(declared.name if declared is not None else col.name)
        for sel in tree.find_all(exp.Select):
            _merged_columns(sel, [r for r in refs if r.select is sel])
        udf_names = set(q.udfs)
        for sel in tree.find_all(exp.Select):
            local = [r for r in refs if r.select is sel]
            for cond, source, joined in list(_cond_items(sel)):
                used = _refs_of(cond, scopes)
                if used is not None and len(used) == 2:
                    hit = crossmatch(cond, scopes)
                    if hit is not None:
                        (ra_, pa_), (rb, pb), r = hit
                        for target, src, spos in ((ra_, rb, pb), (rb, ra_, pa_)):
                            # an outer join's ON bounds only its null-supplying side
                            if source in ("where", "inner") or (source == "LEFT" and joined is target.node):
                                if target.select is sel and src.select is sel:
                                    target.matches.append(Match(target, src, spos, r))
                    key = _equi_join(cond, scopes)
                    if key is not None:
                        for (target, col), (src, scol) in (key, key[::-1]):
                            if (
                                (source in ("where", "inner") or (source == "LEFT" and joined is target.node))
                                and target.select is sel
                                and src.select is sel
                            ):
                                target.keys.append(KeyMatch(target, src, col, scol))
                    for ref in local:
                        ref.exact = False
                    continue
                if used is None or len(used) != 1:
                    for ref in local:
                        ref.exact = False
                    continue
                ref = next(iter(used))
                if ref.select is not sel:  # a correlated condition: evaluated here
                    continue
                safe = (
                    (source == "where" and not ref.nullable)
                    or (source == "inner" and not ref.nullable)
                    or (source == "LEFT" and joined is ref.node)
                )
                if not safe:
                    ref.exact = False
                    continue
                self._push(cond, ref, archives[ref.archive] if ref.archive != UPLOAD else None, udf_names)
        for ref in refs:
            if not ref.columns:  # COUNT(*) and the like still need the rows
                ref.columns[ref.table.id_column or ref.table.columns[0].name] = None
        left = [n for n in tree.find_all(exp.Anonymous) if n.name.upper() in udf_names]
        if left:
            fn = left[0].name.lower()
            owners = self.gw.catalogue.udfs()[left[0].name.upper()][1]
            raise UsageFault(
                f"{fn}() is a function of archive {', '.join(owners)}; in a query over several archives "
                f"it can only be a condition on one table of {', '.join(owners)}"
            )
        stages = self._stages(refs)
        for each in refs:  # the local query reads the fetched rows
            alias = each.node.args.get("alias")
            each.node.replace(
                exp.Table(
                    this=exp.to_identifier(each.view, quoted=True),
                    alias=alias.copy()
                    if alias is not None
                    else exp.TableAlias(this=exp.to_identifier(each.alias, quoted=True)),
                )
            )
        for col in tree.find_all(exp.Column):
            if col.args.get("db") is not None:
                col.set("db", None)
        return Plan(q, tree, stages, self.gw)

    def _push(self, cond: exp.Expression, ref: Ref, archive: Archive | None, udfs: set) -> None:
        """Give one single-reference condition to ``ref``'s fetch (module docstring, 2)."""
        if archive is None:  # an upload: its rows are here; the condition runs locally
            return
        caps = archive.capabilities
        if caps.adql:
            fns = {n.name.upper() for n in cond.find_all(exp.Anonymous)} & udfs
            if fns and any(ref.archive not in self.gw.catalogue.udfs()[f][1] for f in fns):
                return
            cone = cone_term(cond, ref.alias, ref.table) if ref.table.positional else None
            if cone is not None:
                ref.cones.append(cone)
            ref.pushed.append(cond.copy())
            cond.replace(exp.true()) if cond.parent is not None else None
            return
        cone = cone_term(cond, ref.alias, ref.table) if ref.table.positional else None
        if cone is not None and caps.cone:
            ref.cones.append(cone)
            if len(ref.cones) > 1:
                ref.exact = False
            return
        if cone is not None:
            ref.exact = False
            return
        pred = predicate(cond, ref) if caps.comparisons else None
        if pred is None and caps.comparisons and isinstance(cond, exp.Between) and isinstance(cond.this, exp.Column):
            lo = predicate(exp.GTE(this=cond.this.copy(), expression=cond.args["low"].copy()), ref)
            hi = predicate(exp.LTE(this=cond.this.copy(), expression=cond.args["high"].copy()), ref)
            if lo is not None and hi is not None:
                ref.predicates += [lo, hi]
                return
        if pred is not None:
            ref.predicates.append(pred)
        else:
            ref.exact = False

    def _bounded(self, ref: Ref) -> bool:
        """Whether the reference's own conditions bound it (a cone, or ``=``/``IN`` on its id)."""
        return bool(ref.cones) or any(
            p.column.lower() == (ref.table.id_column or "").lower() and p.op in ("=", "IN") for p in ref.predicates
        )

    def _stages(self, refs: list[Ref]) -> list[list[Step]]:
        """Order the fetches: references bounded by themselves (and uploads) first, then those
        bounded through a crossmatch with a reference fetched before them, then the rest an
        archive can give whole; a reference that needs a bound and gets none is refused."""
        archives = self.gw.catalogue.archives
        stages: list[list[Step]] = []
        done: set[int] = set()
        bounded_ids: set[int] = set()
        remaining = list(refs)

        def how(r):
            if r.archive == UPLOAD:
                return "upload"
            return "query" if archives[r.archive].capabilities.adql else "scan"

        while remaining:
            stage = []
            for r in remaining:
                if r.archive == UPLOAD:
                    stage.append(Step(r, "upload", why="uploaded table: its rows are local"))
                elif self._bounded(r):
                    what = "its own cone" if r.cones else "its id constraint"
                    stage.append(Step(r, how(r), why=f"bounded by {what}"))
                else:
                    ready = [m for m in r.matches if m.source.index in done]
                    keys = [
                        k
                        for k in r.keys
                        if k.source.index in done
                        and r.archive != UPLOAD
                        and (archives[r.archive].capabilities.adql or archives[r.archive].capabilities.comparisons)
                    ]
                    if ready:
                        m = min(ready, key=lambda m: m.radius)
                        stage.append(
                            Step(
                                r,
                                how(r),
                                after=m,
                                why=(
                                    f"crossmatch with {m.source.label} within {m.radius:.6g} deg: one cone per row of "
                                    f"{m.source.alias} when it has at most {self.config.multi_cone_rows} rows"
                                    + (
                                        f", else {m.source.alias}'s cone widened by {m.radius:.6g} deg"
                                        if m.source.index in bounded_ids
                                        else ""
                                    )
                                ),
                            )
                        )
                    elif keys:
                        k = next((k for k in keys if k.column == r.table.id_column), keys[0])
                        stage.append(
                            Step(
                                r,
                                how(r),
                                after=k,
                                why=(
                                    f"joined on {r.alias}.{k.column} = {k.source.alias}.{k.source_column}: "
                                    f"{k.column} IN the values fetched for {k.source.label}, "
                                    f"{self.config.keys_per_query} at a time"
                                ),
                            )
                        )
            if not stage:  # nothing bounds what is left: an archive that gives a table whole goes next
                free = [r for r in remaining if not archives[r.archive].capabilities.bounded or len(refs) == 1]
                if not free:
                    raise unbounded(remaining[0])
                stage = [
                    Step(
                        free[0],
                        how(free[0]),
                        why=f"no bound: the archive gives it whole (at most {self.config.max_subquery_rows} rows)",
                    )
                ]
            for s in stage:
                done.add(s.ref.index)
                if s.ref.cones or (isinstance(s.after, Match) and s.after.source.index in bounded_ids):
                    bounded_ids.add(s.ref.index)
            remaining = [r for r in remaining if r.index not in done]
            stages.append(stage)
        return stages

    # -- running -----------------------------------------------------------------------------
    def run(self, plan: Plan, maxrec: int | None, context) -> RowStream:
        """Fetch every step (concurrently within a stage) and evaluate the query locally;
        ``maxrec`` as for :meth:`Archive.execute`.  Raises the first failing step's Fault
        (every other step of the stage is cancelled)."""
        from .upstream import current_scope

        scope = current_scope()
        plan.progress.total = len(plan.steps)
        if context is not None:  # the UWS job document's jobInfo
            context.info = lambda: {"progress": plan.progress.as_dict(), "plan": plan.explain()}
        fetched: dict[int, pa.Table] = {}
        cones_of: dict[int, list[Cone] | None] = {}
        only_ref = len(plan.steps) == 1
        for stage in plan.stages:
            jobs: list[tuple[Step, list[Cone] | Predicate | None]] = []
            for step in stage:
                cones: list[Cone] | Predicate | None
                if isinstance(step.after, KeyMatch):
                    cones = self._key_values(step.after, fetched)
                else:
                    cones = cones_of[step.ref.index] = self._cones(step, fetched, cones_of)
                jobs.append((step, cones))
            with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
                futures = [
                    pool.submit(
                        self._in_scope, scope, self._fetch, step, cones, context, plan, maxrec if only_ref else None
                    )
                    for step, cones in jobs
                ]
                try:
                    for (step, _), f in zip(jobs, futures):
                        fetched[step.ref.index] = f.result()
                        step.rows = fetched[step.ref.index].num_rows
                except BaseException:
                    for f in futures:
                        f.cancel()
                    if context is not None and not context.cancelled.is_set():
                        context.cancel("another sub-query of the query failed")
                    raise
        return self._evaluate(plan, fetched, maxrec, context)

    @staticmethod
    def _in_scope(scope, fn, *args):
        if scope is not None:
            scope.enter()
        try:
            return fn(*args)
        finally:
            if scope is not None:
                from .upstream import Scope

                Scope.exit()

    @staticmethod
    def _key_values(k: KeyMatch, fetched: dict) -> Predicate:
        """``column IN (...)``: the distinct non-null join-key values of the fetched source, as
        a sorted Arrow array (sliced into IN lists or uploaded tables by the fetch)."""
        rows = fetched[k.source.index]
        values = pc.unique(pc.drop_null(rows.column(_name_in(rows, k.source_column))))
        return Predicate(k.column, "IN", values.take(pc.sort_indices(values)))

    def _cones(self, step: Step, fetched: dict, cones_of: dict) -> list[Cone] | None:
        """The cones bounding a step (None: no bound): its own (the smallest, when several are
        AND-ed), one per row of a small partner, or the partner's cones widened."""
        ref = step.ref
        if ref.cones:
            return [min(ref.cones, key=lambda c: c.radius)]
        m = step.after
        if not isinstance(m, Match):
            return None
        rows = fetched[m.source.index]
        if rows.num_rows <= self.config.multi_cone_rows or not cones_of.get(m.source.index):
            ra = rows.column(_name_in(rows, m.source_pos[0])).to_numpy(zero_copy_only=False)
            dec = rows.column(_name_in(rows, m.source_pos[1])).to_numpy(zero_copy_only=False)
            ok = np.isfinite(ra) & np.isfinite(dec)
            pairs = np.unique(np.stack([ra[ok].astype(float), dec[ok].astype(float)], axis=1), axis=0)
            return [Cone(float(a), float(d), m.radius) for a, d in pairs]
        return [Cone(c.ra, c.dec, c.radius + m.radius) for c in cones_of[m.source.index]]

    def _fetch(
        self, step: Step, cones: list[Cone] | Predicate | None, context, plan: Plan, maxrec: int | None
    ) -> pa.Table:
        ref = step.ref
        with plan.progress.lock:
            plan.progress.waiting_on.add(ref.archive)
        try:
            if step.how == "upload":
                data = self.gw_upload(plan.query, ref)
                table = data.select([_name_in(data, c) for c in ref.columns])
            elif (isinstance(cones, list) and not cones) or (isinstance(cones, Predicate) and len(cones.value) == 0):
                table = None  # a partner without rows: nothing can match
            elif step.how == "query":
                table = self._fetch_query(ref, cones, context, plan)
            else:
                table = self._fetch_scan(ref, cones, context, plan, maxrec)
            if table is None or step.how == "upload":
                with plan.progress.lock:  # no request was sent: the step is one sub-query done
                    plan.progress.done += 1
            return _empty(ref) if table is None else table
        finally:
            step.finished = time.monotonic()
            with plan.progress.lock:
                plan.progress.waiting_on.discard(ref.archive)

    @staticmethod
    def gw_upload(q: AdqlQuery, ref: Ref) -> pa.Table:
        return q.uploads[ref.table.name.lower()].data

    def _fetch_query(self, ref: Ref, cones: list[Cone] | Predicate | None, context, plan: Plan) -> pa.Table:
        """ADQL sub-queries of an SQL archive: the needed columns, the pushed conditions, and
        the cones (OR-ed in chunks; as a TAP_UPLOAD table to an archive that joins uploads)."""
        from .adql import analyze

        archive = self.gw.catalogue.archives[ref.archive]
        if ref.cones:  # its own cone is among the pushed conditions already
            cones = None
        texts: list[tuple[str, dict]] = []
        caps = archive.capabilities
        per = caps.upload_rows or 1 << 62  # rows of one forwarded upload
        if isinstance(cones, Predicate) and caps.uploads and len(cones.value) > 1:
            texts = [
                (
                    _subquery_text(ref, None, keys=cones, upload=True),
                    {"gw_keys": _key_upload(ref, Predicate(cones.column, "IN", cones.value[i : i + per]))},
                )
                for i in range(0, len(cones.value), per)
            ]
            cones = None
        elif isinstance(cones, Predicate):
            n = self.config.keys_per_query
            texts = [
                (_subquery_text(ref, None, keys=Predicate(cones.column, "IN", _values(cones, i, n))), {})
                for i in range(0, len(cones.value), n)
            ]
            cones = None
        elif cones and len(cones) > 1 and caps.uploads:
            texts = [
                (_subquery_text(ref, None, upload=True), {"gw_cones": _cone_upload(cones[i : i + per])})
                for i in range(0, len(cones), per)
            ]
        elif cones:
            cones = self._grouped(cones)
            n = self.config.cones_per_query
            texts = [(_subquery_text(ref, cones[i : i + n]), {}) for i in range(0, len(cones), n)]
        else:
            texts = [(_subquery_text(ref, None), {})]
        with plan.progress.lock:
            plan.progress.total += len(texts) - 1

        def one(item):
            text, uploads = item
            from .catalogue import UploadOverlay

            cat = UploadOverlay(self.gw.catalogue, uploads) if uploads else self.gw.catalogue
            sub = analyze(text, cat)
            sub.uploads = uploads
            native = archive.translate(sub)
            limit = self.config.max_subquery_rows
            stream = archive.execute(native, limit, context=context)
            batches = list(stream)
            if stream.error:
                raise TransientFault(
                    f"archive {ref.archive} failed while answering {ref.table.qualified_name}: {stream.error}"
                )
            if stream.overflow:
                raise UsageFault(
                    f"the sub-query on {ref.table.qualified_name} (archive {ref.archive}) returns more "
                    f"than {limit} rows (planner.max_subquery_rows); add constraints on that table"
                )
            t = _table(batches, ref)
            with plan.progress.lock:
                plan.progress.rows += t.num_rows
                plan.progress.done += 1
            return t

        return self._many(
            ref,
            archive,
            [(t, u) for t, u in texts],
            one,
            plan,
            dedupe=len(texts) > 1 or bool(cones and len(cones) > 1),
            describe=lambda item: item[0],
        )

    def _fetch_scan(
        self, ref: Ref, cones: list[Cone] | Predicate | None, context, plan: Plan, maxrec: int | None
    ) -> pa.Table:
        """One :class:`ScanRequest` per cone (or one without a cone) to a scanning archive."""
        archive = self.gw.catalogue.archives[ref.archive]
        caps = archive.capabilities
        columns = list(ref.columns) if caps.column_selection else [c.name for c in ref.table.columns]
        order, limit = [], None
        single = len(plan.steps) == 1 and (cones is None or (isinstance(cones, list) and len(cones) <= 1))
        if single and ref.exact and maxrec is not None and isinstance(plan.query.ast, exp.Select):
            order, limit = self._order_limit(plan.query.ast, ref, caps, maxrec)
        if isinstance(cones, Predicate):
            n = self.config.keys_per_query
            requests = [
                ScanRequest(
                    ref.table, columns, None, [*ref.predicates, Predicate(cones.column, "IN", _values(cones, i, n))]
                )
                for i in range(0, len(cones.value), n)
            ]
        else:
            requests = [
                ScanRequest(ref.table, columns, c, list(ref.predicates), order, limit)
                for c in (self._grouped(cones) if cones is not None else [None])
            ]
        with plan.progress.lock:
            plan.progress.total += len(requests) - 1

        def one(request: ScanRequest):
            t = _table(archive.scan_batches(request, context), ref)
            with plan.progress.lock:
                plan.progress.rows += t.num_rows
                plan.progress.done += 1
            if t.num_rows > self.config.max_subquery_rows:
                raise UsageFault(
                    f"{ref.table.qualified_name} (archive {ref.archive}) gives more than "
                    f"{self.config.max_subquery_rows} rows (planner.max_subquery_rows); add constraints"
                )
            return t

        return self._many(ref, archive, requests, one, plan, dedupe=len(requests) > 1, describe=lambda r: r.describe())

    def _grouped(self, cones: list[Cone]) -> list[Cone]:
        """``cones`` for an archive that takes them one request (or one OR-ed sub-query) at
        a time: cones whose centres lie within ``planner.cone_group_size`` degrees of each other
        share one covering cone (:func:`gateway.sky.covering_cones`), so a dense target list
        costs one request per patch of sky instead of one per target.  The crossmatch stays
        exact: the fetched rows are a superset, and the join is evaluated here."""
        return [Cone(*c) for c in covering_cones(cones, self.config.cone_group_size)]

    @staticmethod
    def _any_rows(plan: Plan) -> bool:
        from .residual import any_rows

        return isinstance(plan.query.ast, exp.Select) and any_rows(plan.query.ast)

    @staticmethod
    def _order_limit(tree: exp.Select, ref: Ref, caps, maxrec: int):
        """ORDER BY and the row count a lone exactly-answered scan can take over: plain
        columns of the table, no grouping, DISTINCT, aggregate or OFFSET."""
        if (
            any(tree.args.get(k) for k in ("group", "having", "distinct", "offset"))
            or tree.find(exp.AggFunc) is not None
        ):
            return [], None
        top = tree.args.get("limit")
        n = int(top.expression.name) if top is not None else None
        want = maxrec + 1 if n is None else min(n, maxrec + 1)
        order = []
        o = tree.args.get("order")
        for key in o.expressions if o is not None else []:
            col = key.this
            if not (isinstance(col, exp.Column) and ref.table.column(col.name) is not None and caps.order_by):
                return [], None
            # an output alias of another expression under the same name sorts by that one
            if any(
                isinstance(e, exp.Alias)
                and e.alias.lower() == col.name.lower()
                and not (isinstance(e.this, exp.Column) and e.this.name == col.name)
                for e in tree.expressions
            ):
                return [], None
            declared = ref.table.column(col.name)
            assert declared is not None  # checked above
            order.append((declared.name, bool(key.args.get("desc"))))
        return order, (want if caps.top else None)

    def _many(self, ref: Ref, archive: Archive, items: list, one, plan: Plan, dedupe: bool, describe) -> pa.Table:
        """Run ``one(item)`` for every item, at most ``max_concurrency`` at once; concatenate
        (duplicates of overlapping cones removed) in the items' order."""
        step = next(s for s in plan.steps if s.ref is ref)
        step.requests = [describe(i) for i in items]

        def named(item):  # an upstream failure names the archive; its calls are counted under it
            with naming_archive(ref.archive):
                return one(item)

        if len(items) == 1:
            return named(items[0])
        from .upstream import current_scope

        scope = current_scope()
        workers = min(len(items), getattr(archive.config, "max_concurrency", 8))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(self._in_scope, scope, named, i) for i in items]
            try:
                parts = [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        parts = [p for p in parts if p.num_rows] or parts[:1]
        table = pa.concat_tables([p.cast(parts[0].schema) if p.schema != parts[0].schema else p for p in parts])
        return _dedupe(table, ref) if dedupe else table

    def _evaluate(self, plan: Plan, fetched: dict[int, pa.Table], maxrec: int | None, context) -> RowStream:
        engine = LocalEngine(self.config, self.gw.config.base_dir)
        q = plan.query
        local = AdqlQuery(text=q.text, ast=plan.tree, output=q.output)  # type: ignore[arg-type]  # a set operation too
        native = engine.translate(local)
        native.views = {f"gw_ref_{i}": t for i, t in fetched.items()}
        if maxrec == 0:
            stream = engine.execute(native, 0, top=None, context=context)
            stream.overflow = True
        else:
            stream = engine.execute(native, maxrec, top=q.top, context=context)
        inner = stream.on_close

        def close():
            if inner is not None:
                inner()
            engine.close()

        stream.on_close = close
        for o in q.output:  # rows of a table with DataLink keep their service descriptor
            if o.column is None:
                continue
            for r in (s.ref for s in plan.steps):
                a = self.gw.catalogue.archives.get(r.archive)
                dl = a.datalink_column(r.table) if a is not None else None
                if dl is not None and any(c is o.column for c in r.table.columns) and o.column.name == dl:
                    stream.datalink = (r.archive, o.name)
        return stream


class LocalEngine(DuckDBArchive):
    """The per-query DuckDB where the federated remainder runs (memory-limited, spilling)."""

    def __init__(self, config, base_dir: Path):
        Archive.__init__(self, "local", ArchiveConfig(kind="local", max_concurrency=1), base_dir=base_dir)
        tmp = Path(base_dir) / config.temp_directory
        tmp.mkdir(parents=True, exist_ok=True)
        self.db = duckdb.connect(
            ":memory:", config={"threads": 2, "memory_limit": config.memory_limit, "temp_directory": str(tmp)}
        )
        self._lock = threading.Lock()
        self._cone_cache = {}
        self._local = threading.local()
        self._order_index = {}


# -- helpers -------------------------------------------------------------------------------
def unbounded(r: Ref) -> UsageFault:
    """The 400 for a reference of a ``bounded`` archive without a bound: what to add."""
    t = r.table
    what = f"{t.qualified_name} (archive {r.archive}) is too large to scan: add a position"
    if t.positional:
        what += (
            f", e.g. WHERE 1 = CONTAINS(POINT('ICRS', {r.alias}.{t.ra_column}, {r.alias}.{t.dec_column}), "
            "CIRCLE('ICRS', ra, dec, radius))"
        )
    if t.id_column:
        what += f", or an id constraint such as {t.id_column} = ..."
    what += (
        ", or a crossmatch with a table bounded so, or with a small (uploaded) one, e.g. "
        "DISTANCE(POINT('ICRS', a.ra, a.dec), POINT('ICRS', b.ra, b.dec)) < radius"
    )
    return UsageFault(what)


def _name_in(t: pa.Table, name: str) -> str:
    """The column of ``t`` named ``name`` (case-insensitively, as ADQL names are)."""
    if name in t.column_names:
        return name
    low = name.lower()
    for n in t.column_names:
        if n.lower() == low:
            return n
    raise TransientFault(f"the upstream's answer lacks column {name}")


def _empty(ref: Ref) -> pa.Table:
    from .schema import ARROW_TYPES

    cols = [ref.table.column(c) or Column(c, "double") for c in ref.columns]
    return pa.table(
        {
            c.name: pa.array(
                [], pa.string() if c.datatype == "char" or c.arraysize else ARROW_TYPES.get(c.datatype, pa.float64())
            )
            for c in cols
        }
    )


def _table(batches: list[pa.RecordBatch], ref: Ref) -> pa.Table:
    """The needed columns of a fetched answer, named as declared."""
    if not batches:
        return _empty(ref)
    t = pa.Table.from_batches(batches)
    names = [_name_in(t, c) for c in ref.columns]
    return t.select(names).rename_columns(list(ref.columns))


def _dedupe(t: pa.Table, ref: Ref) -> pa.Table:
    """One row per id (overlapping cones return a row twice); all columns when no id."""
    key = [ref.table.id_column] if ref.table.id_column and ref.table.id_column in t.column_names else None
    idx = pa.array(np.arange(t.num_rows))
    keyed = t.append_column("__gw_i", idx)
    groups = keyed.group_by(
        key or [n for n in t.column_names if not pa.types.is_list(t.schema.field(n).type)], use_threads=False
    ).aggregate([("__gw_i", "min")])
    keep = pc.sort_indices(groups["__gw_i_min"])
    return t.take(pc.take(groups["__gw_i_min"], keep))


def _cone_upload(cones: list[Cone]):
    from .schema import Table as T
    from .uploads import UploadTable

    meta = T(
        "TAP_UPLOAD",
        "gw_cones",
        [Column("ra", "double", unit="deg"), Column("dec", "double", unit="deg"), Column("r", "double", unit="deg")],
    )
    data = pa.table({"ra": [c.ra for c in cones], "dec": [c.dec for c in cones], "r": [c.radius for c in cones]})
    return UploadTable(meta, data)


def _values(keys: Predicate, start: int, n: int) -> tuple:
    """Values ``start`` .. ``start + n`` of a join-key Predicate, as a tuple (an IN list)."""
    v = keys.value
    return tuple(v.slice(start, n).to_pylist()) if isinstance(v, pa.Array) else tuple(v[start : start + n])


def _key_upload(ref: Ref, keys: Predicate):
    """The join-key values as a TAP_UPLOAD table ``gw_keys(v)`` of the key column's type."""
    from .schema import ARROW_TYPES
    from .schema import Table as T
    from .uploads import UploadTable

    col = ref.table.column(keys.column)
    assert col is not None  # a declared column (KeyMatch)
    meta = T("TAP_UPLOAD", "gw_keys", [Column("v", col.datatype, arraysize=col.arraysize)])
    typ = pa.string() if col.datatype == "char" or col.arraysize else ARROW_TYPES.get(col.datatype, pa.float64())
    values = keys.value if isinstance(keys.value, pa.Array) else pa.array(list(keys.value))
    return UploadTable(meta, pa.table({"v": values.cast(typ)}))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(v) -> str:
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, bool) or v is None:
        raise ValueError(f"no ADQL literal for {v!r}")
    return str(int(v)) if isinstance(v, (int, np.integer)) else repr(float(v))


def _subquery_text(ref: Ref, cones: list[Cone] | None, upload: bool = False, keys: Predicate | None = None) -> str:
    """ADQL of one reference's sub-query: its needed columns, pushed conditions, cones and
    join-key values (``keys``: ``column IN (...)``)."""
    t, a = ref.table, _ident(ref.alias)
    cols = ", ".join(f"{a}.{_ident(c)}" for c in ref.columns)
    where = [c.sql(dialect=ADQL) for c in ref.pushed]
    if keys is not None and upload:
        where.append(f"EXISTS (SELECT 1 FROM TAP_UPLOAD.gw_keys AS gw_k WHERE gw_k.v = {a}.{_ident(keys.column)})")
    elif keys is not None:
        where.append(f"{a}.{_ident(keys.column)} IN ({', '.join(_literal(v) for v in keys.value)})")
    pos = (
        f"POINT('ICRS', {a}.{_ident(t.ra_column)}, {a}.{_ident(t.dec_column)})"
        if t.ra_column and t.dec_column
        else None
    )
    if cones and pos:
        where.append(
            "("
            + " OR ".join(f"1 = CONTAINS({pos}, CIRCLE('ICRS', {c.ra!r}, {c.dec!r}, {c.radius!r}))" for c in cones)
            + ")"
        )
    text = f"SELECT {cols} FROM {_ident(t.schema)}.{_ident(t.name)} AS {a}"
    if upload and pos and keys is None:
        # a join driven by the uploaded cones (an indexed cone search per cone upstream, where
        # EXISTS would test every row of the table against every cone); a row in two cones
        # comes twice and is deduplicated by the fetch
        text = (
            f"SELECT {cols} FROM TAP_UPLOAD.gw_cones AS gw_c JOIN {_ident(t.schema)}.{_ident(t.name)} AS {a} "
            f"ON 1 = CONTAINS({pos}, CIRCLE('ICRS', gw_c.ra, gw_c.dec, gw_c.r))"
        )
    if where:
        text += " WHERE " + " AND ".join(f"({w})" for w in where)
    return text
