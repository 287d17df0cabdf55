"""Kind ``hats``: HATS catalogues (HEALPix-partitioned Parquet with margin caches, the LSDB
format) served over TAP and SCS (plugins/hats/README.md).

A query is answered in two steps:

1. **What to read.**  For each reference to a HATS table, the conditions of its query block
   that bound it are read off the validated ADQL (:class:`Bounds`):
   * a cone (``CONTAINS(POINT, CIRCLE)``, ``DISTANCE(...) < r``), an OR of cones, a ``BOX`` or a
     ``POLYGON`` on the table's position becomes the partitions the region touches and the
     order-29 HEALPix ranges inside them (:meth:`HatsCatalog.select`);
   * ``column op constant``, ``IN`` and ``BETWEEN`` become Parquet filters (row groups skipped
     by their statistics), an ``=``/``IN`` on the id column among them;
   * only the columns the query names are read.
   A join of two HATS tables, or of an upload with one, on a ``DISTANCE``/``CONTAINS``
   condition with a constant radius is a **crossmatch**: LSDB's margin-aware crossmatch finds
   every pair within the radius (:class:`AllPairs`), partition by partition.
2. **The query itself** runs on DuckDB over what was read, with the gateway's own ADQL
   translation (:class:`gateway.engine.DuckDBArchive`): every condition is evaluated again,
   exactly.  A plain query over one table streams partition by partition (DuckDB pulls a
   record-batch reader), so memory stays flat whatever the result size.

Partitions are read in this process by ``threads`` threads, or, with ``dask_scheduler`` set
and more than ``dask_partitions`` partitions to read, on the Dask cluster (as are
crossmatches).  A query with no spatial or id bound over a catalogue of more than
``scan_rows`` rows is refused in sync with a quote; async jobs may read up to
``async_scan_rows``.  Async jobs report the partitions done in ``uws:jobInfo``.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from sqlglot import exp

from gateway.adql.validate import AdqlQuery, position_of
from gateway.archive import ArchiveConfig, Cone
from gateway.engine import DuckDBArchive, normalize_batch, scs_columns
from gateway.faults import UsageFault
from gateway.residual import column_of, cone_forms, cone_term, conjuncts, constant, disjuncts, polygon_term
from gateway.rowstream import RowStream, limit_batches
from gateway.schema import Table
from gateway.sky import separation

from .catalog import HatsCatalog, Partition, Region, read_partition, take
from .crossmatch import crossmatch_batches

XM_VIEW = "hats__xm"


class CatalogSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", description="ADQL table name")
    path: str = Field(description="the HATS catalogue or collection: a directory, or any fsspec URL")
    metadata: Path | None = Field(None, description="YAML with columns: [{name, unit, ucd, description}]")
    id_column: str | None = Field(None, description="the catalogue's unique id column")
    description: str | None = None


class HatsConfig(ArchiveConfig):
    kind: Literal["hats"]
    adql_schema: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", description="ADQL schema of the catalogues")
    catalogs: list[CatalogSpec] = Field(min_length=1)
    dask_scheduler: str | None = Field(None, description="address of a Dask scheduler (tcp://host:8786)")
    dask_partitions: int = Field(8, ge=1, description="reads of more partitions than this go to the Dask cluster")
    threads: int = Field(2, ge=1, le=64, description="partitions read at once in this process")
    scan_rows: int = Field(
        2_000_000, ge=0, description="sync: most rows a query without a spatial or id bound may read"
    )
    async_scan_rows: int = Field(
        1_000_000_000, ge=0, description="async: most rows a query without a spatial or id bound may read"
    )


@dataclass
class Bounds:
    """What a query block says about one HATS table reference (module docstring)."""

    regions: list[Region] = field(default_factory=list)
    filters: list[tuple] = field(default_factory=list)
    by_id: bool = False


@dataclass
class Loader:
    """How to fill one view: a catalogue read, or a crossmatch (``xm`` set)."""

    catalog: HatsCatalog
    columns: list[str]
    bounds: Bounds
    position: tuple[int, int] | None = None
    xm: dict | None = None


@dataclass
class HatsPlan:
    plan: object  # gateway.engine SqlPlan over the views
    loaders: dict[str, Loader]
    streamable: bool


def _flip(op):
    return {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!="}[op]


OPS = {exp.EQ: "=", exp.NEQ: "!=", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}


def _alias(node: exp.Table) -> str:
    return node.alias_or_name.lower()


def _comparison(term, alias: str, table: Table) -> list[tuple] | None:
    """Parquet filters equal to ``term`` when it compares one of ``table``'s columns with
    constants of the column's kind (number with number, text with text)."""

    def col_const(c, v):
        col = column_of(c, alias, table)
        if col is None or isinstance(v, exp.Column) or any(True for _ in v.find_all(exp.Column)):
            return None, None
        try:
            value = constant(v)
        except (ValueError, TypeError):
            return None, None
        text = col.datatype == "char"
        if isinstance(value, bool) or text != isinstance(value, str):
            return None, None
        return col, value

    if type(term) in OPS:
        for c, v, flip in ((term.this, term.expression, False), (term.expression, term.this, True)):
            col, value = col_const(c, v)
            if col is not None:
                op = OPS[type(term)]
                return [(col.name, _flip(op) if flip else op, value)]
    if isinstance(term, exp.In) and not term.args.get("query") and not term.args.get("is_global"):
        values = []
        for v in term.expressions:
            col, value = col_const(term.this, v)
            if col is None:
                return None
            values.append(value)
        return [(col.name, "in", tuple(values))] if values else None
    if isinstance(term, exp.Between):
        col, lo = col_const(term.this, term.args["low"])
        col2, hi = col_const(term.this, term.args["high"])
        if col is not None and col2 is not None:
            return [(col.name, ">=", lo), (col.name, "<=", hi)]
    return None


class HatsArchive(DuckDBArchive):
    kind = "hats"
    Config = HatsConfig

    def __init__(self, name, config: HatsConfig, *, base_dir):
        super().__init__(name, config, base_dir=base_dir)
        self.config: HatsConfig = config
        # capabilities: DuckDBArchive's (ADQL 2.1 with uploads, set operations, WITH, geometry)
        self.catalogs: dict[str, HatsCatalog] = {}
        problems = []
        for spec in config.catalogs:
            path = spec.path
            if "://" not in path and not Path(path).is_absolute():
                path = str(Path(base_dir) / path)
            meta = (
                None
                if spec.metadata is None
                else (spec.metadata if spec.metadata.is_absolute() else Path(base_dir) / spec.metadata)
            )
            try:
                self.catalogs[spec.name.lower()] = HatsCatalog(
                    path, config.adql_schema, spec.name, meta, spec.id_column, spec.description
                )
            except (ValueError, OSError) as e:
                problems.append(f"catalogs[{spec.name}]: {e}")
        if problems:
            raise ValueError("; ".join(problems))
        self.pool = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix=f"hats-{name}")
        self._client = None
        self._client_lock = threading.Lock()
        self._warm_pid: int | None = None
        self._warm_lock = threading.Lock()
        # A forked worker (gunicorn builds the app in its master, then forks) warms itself at
        # once.  The master never compiles: a fork while another thread holds numba's compiler
        # lock would leave the child's copy of that lock held forever.
        ref = weakref.WeakMethod(self.warm_up)
        os.register_at_fork(after_in_child=lambda: (m := ref()) is not None and m())

    def warm_up(self) -> None:
        """Start, once per process and in the background, compiling the numba functions that
        hats uses to select partitions and to align two catalogues (about 10 to 30 s of CPU on
        first use), so that the first crossmatch does not wait for them.  Called in a forked
        child and on the archive's first query."""
        with self._warm_lock:
            if self._warm_pid == os.getpid():
                return
            self._warm_pid = os.getpid()
        threading.Thread(target=self._compile, name=f"hats-{self.name}-warm-up", daemon=True).start()

    def _compile(self) -> None:
        from .crossmatch import AllPairs

        cat = next(iter(self.catalogs.values()))
        try:
            cat.select([Region("circle", (0.0, 0.0, 0.01))])
            pos = cat.lsdb[[cat.ra, cat.dec]]
            pos.crossmatch(pos, algorithm=AllPairs(radius_arcsec=0.001), suffix_method="all_columns", log_changes=False)
        except Exception:  # noqa: BLE001 - a warm-up only; the real query reports its own errors
            pass

    def tables(self) -> list[Table]:
        return [c.table for c in self.catalogs.values()]

    def catalog_of(self, node) -> HatsCatalog | None:
        meta = node.meta.get("gw_table") if isinstance(node, exp.Table) else None
        if meta is None or meta.schema.lower() != self.config.adql_schema.lower():
            return None
        return self.catalogs.get(meta.name.lower())

    # -- Dask -------------------------------------------------------------------------------
    def client(self):
        """The Dask client of ``dask_scheduler`` (made once), or None."""
        if self.config.dask_scheduler is None:
            return None
        with self._client_lock:
            if self._client is None:
                from distributed import Client

                self._client = Client(self.config.dask_scheduler, set_as_default=False, timeout=30)
            return self._client

    # -- translation ------------------------------------------------------------------------
    def bounds(self, node: exp.Table) -> Bounds:
        """The bounds a table reference's query block puts on it (module docstring)."""
        cat = self.catalog_of(node)
        assert cat is not None
        table, alias = cat.table, _alias(node)
        sel = node.find_ancestor(exp.Select)
        terms = list(conjuncts(sel.args["where"].this)) if sel is not None and sel.args.get("where") else []
        for join in (sel.args.get("joins") or []) if sel is not None else []:
            on = join.args.get("on")
            if on is None:
                continue
            side = (join.args.get("side") or "").upper()
            own = isinstance(join.this, exp.Table) and _alias(join.this) == alias
            if not side or (side == "LEFT" and own):  # an outer join's ON bounds only its nullable side
                terms += list(conjuncts(on))
        b = Bounds()
        region_terms = []
        for term in terms:
            cones = []
            for d in disjuncts(term):
                c = cone_term(d, alias, table) if (len(_names(d)) <= 1 or alias in _names(d)) else None
                v = None if c is not None else polygon_term(d, alias, table)
                if c is None and v is None:
                    cones = []
                    break
                cones.append(Region("circle", (c.ra, c.dec, c.radius)) if c is not None else Region("polygon", (v,)))
            if cones:
                region_terms.append(cones)
                continue
            f = _comparison(term, alias, table)
            if f is not None:
                b.filters += f
                if any((c == table.id_column or c.lower() in cat.indexes) and op in ("=", "in") for c, op, _ in f):
                    b.by_id = True
        if region_terms:  # AND of region conditions: the smallest set bounds (each is exact later)
            b.regions = min(region_terms, key=lambda rs: sum(r.args[2] ** 2 if r.kind == "circle" else 1 for r in rs))
        return b

    def translate(self, query: AdqlQuery) -> HatsPlan:
        self.warm_up()
        tree = query.ast.copy()
        refs = [n for n in tree.find_all(exp.Table) if self.catalog_of(n) is not None]
        loaders: dict[str, Loader] = {}
        xm = self._crossmatch(tree, refs, query)
        done = set()
        if xm is not None:
            loaders[XM_VIEW] = xm
            done = {id(n) for n in xm.xm["nodes"]}  # type: ignore[index]
        for i, node in enumerate(refs):
            if id(node) in done:
                continue
            cat = self.catalog_of(node)
            assert cat is not None
            view = f"hats__{i}"
            alias = _alias(node)
            cols = {c.name.lower() for c in tree.find_all(exp.Column) if c.table.lower() == alias}
            names = [c.name for c in cat.table.columns if c.name.lower() in cols] or [cat.ra]
            pos = position_of(node)
            loaders[view] = Loader(cat, names, self.bounds(node), pos)
            node.replace(
                exp.Table(
                    this=exp.to_identifier(view, quoted=True),
                    alias=node.args.get("alias").copy()
                    if node.args.get("alias") is not None
                    else exp.TableAlias(this=exp.to_identifier(node.name)),
                )
            )
        streamable = (
            isinstance(tree, exp.Select)
            and len(loaders) == 1
            and not any(t.meta.get("gw_archive") == "tap_upload" for t in tree.find_all(exp.Table))
            and not any(True for _ in tree.find_all(exp.Subquery, exp.With, exp.Join))
        )
        plan = DuckDBArchive.translate(self, dc_replace(query, ast=tree))
        return HatsPlan(plan, loaders, streamable)

    def _crossmatch(self, tree, refs, query: AdqlQuery) -> Loader | None:
        """A crossmatch (module docstring): the one SELECT joining two sources, a HATS table and
        another HATS table or an upload, on a distance condition with constant radius.  The two
        sources become one view of their pairs (``l__col``, ``r__col``); the condition stays."""
        if not isinstance(tree, exp.Select) or len(list(tree.find_all(exp.Select))) != 1:
            return None
        joins = tree.args.get("joins") or []
        src = tree.args.get("from_")
        if (
            len(joins) != 1
            or src is None
            or not isinstance(src.this, exp.Table)
            or not isinstance(joins[0].this, exp.Table)
        ):
            return None
        join = joins[0]
        if (join.args.get("side") or "") or (join.args.get("kind") or "").upper() not in ("", "INNER", "CROSS"):
            return None
        a, b = src.this, join.this
        nodes = {_alias(a): a, _alias(b): b}
        if len(nodes) != 2:
            return None
        terms = list(conjuncts(join.args["on"])) if join.args.get("on") is not None else []
        terms += list(conjuncts(tree.args["where"].this)) if tree.args.get("where") is not None else []
        for term in terms:
            for pos, centre, radius in cone_forms(term):
                sides = [self._position_of(nodes, pos, query), self._position_of(nodes, centre, query)]
                if None in sides or sides[0][0] == sides[1][0]:  # type: ignore[index]
                    continue
                try:
                    r = float(constant(radius))
                except (ValueError, TypeError):
                    continue
                (ra_alias, _), (rb_alias, _) = sides  # type: ignore[misc]
                left, right = nodes[rb_alias], nodes[ra_alias]  # the circle's centre on the left
                if self.catalog_of(right) is None:
                    left, right = right, left
                if self.catalog_of(right) is None:
                    continue
                if self.catalog_of(left) is None and left.meta.get("gw_archive") != "tap_upload":
                    continue
                return self._crossmatch_loader(tree, query, left, right, r, join, sides)
        return None

    def _position_of(self, nodes: dict, args: list, query: AdqlQuery):
        """(alias, (ra, dec) names) when ``args`` are a source's own position columns."""
        if len(args) != 2 or not all(isinstance(x, exp.Column) for x in args):
            return None
        alias = args[0].table.lower()
        if alias != args[1].table.lower() or alias not in nodes:
            return None
        node = nodes[alias]
        cat = self.catalog_of(node)
        if cat is not None:
            if (args[0].name.lower(), args[1].name.lower()) != (cat.ra.lower(), cat.dec.lower()):
                return None
        elif node.meta.get("gw_archive") != "tap_upload":
            return None
        return alias, (args[0].name, args[1].name)

    def _crossmatch_loader(self, tree, query, left, right, radius: float, join, sides) -> Loader:
        rcat = self.catalog_of(right)
        assert rcat is not None
        r_arcsec = radius * 3600
        if rcat.margin_arcsec is None or rcat.margin_arcsec < r_arcsec:
            have = (
                "no margin cache" if rcat.margin_arcsec is None else f"a margin cache of {rcat.margin_arcsec:g} arcsec"
            )
            raise UsageFault(
                f"{rcat.table.qualified_name} has {have}: a crossmatch within {r_arcsec:g} arcsec needs a margin "
                "at least that wide (hats-import's margin_threshold); use a smaller radius",
                position=position_of(right),
            )
        la, ra_ = _alias(left), _alias(right)
        centre = dict(sides)
        lcat = self.catalog_of(left)
        used: dict[str, set[str]] = {la: set(), ra_: set()}
        for c in tree.find_all(exp.Column):
            if c.table.lower() in used:
                used[c.table.lower()].add(c.name.lower())
        if lcat is not None:
            lcols = [
                c.name for c in lcat.table.columns if c.name.lower() in used[la] | {lcat.ra.lower(), lcat.dec.lower()}
            ]
            upload = None
            lpos = (lcat.ra, lcat.dec)
        else:
            up = query.uploads[left.name.lower()]
            data = up.data
            want = used[la] | {n.lower() for n in centre[la]}
            lcols = [n for n in data.column_names if n.lower() in want]
            by_lower = {n.lower(): n for n in data.column_names}
            lpos = (by_lower[centre[la][0].lower()], by_lower[centre[la][1].lower()])
            upload = data.select(lcols)
        rcols = [
            c.name for c in rcat.table.columns if c.name.lower() in used[ra_] | {rcat.ra.lower(), rcat.dec.lower()}
        ]
        spec = {
            "nodes": [left, right],
            "left": lcat,
            "upload": upload,
            "left_pos": lpos,
            "left_columns": lcols,
            "right_columns": rcols,
            "radius_arcsec": r_arcsec,
            "left_bounds": self.bounds(left) if lcat is not None else Bounds(),
            "right_bounds": self.bounds(right),
        }
        # one view of the pairs; the two sources' columns renamed l__/r__
        rename = {la: "l__", ra_: "r__"}
        for c in tree.find_all(exp.Column):
            prefix = rename.get(c.table.lower())
            if prefix is not None:
                c.set("this", exp.to_identifier(prefix + c.name, quoted=True))
                c.set("table", exp.to_identifier("__x"))
        on = join.args.get("on")
        tree.set("joins", None)
        tree.set(
            "from_",
            exp.From(
                this=exp.Table(
                    this=exp.to_identifier(XM_VIEW, quoted=True), alias=exp.TableAlias(this=exp.to_identifier("__x"))
                )
            ),
        )
        if on is not None:
            where = tree.args.get("where")
            tree.set("where", exp.Where(this=exp.and_(on, where.this) if where is not None else on))
        return Loader(rcat, rcols, spec["right_bounds"], position_of(right), spec)

    # -- execution --------------------------------------------------------------------------
    def execute(self, native: HatsPlan, maxrec: int | None, top: int | None = None, context=None) -> RowStream:
        progress = {"partitions": 0, "partitions_done": 0}
        if context is not None:
            context.info = lambda: {"progress": dict(progress)}
        views = dict(native.plan.views or {})  # type: ignore[attr-defined]
        for view, loader in native.loaders.items():
            batches, schema = self._open(loader, context, progress)
            if native.streamable:
                views[view] = pa.RecordBatchReader.from_batches(schema, batches)
            else:
                views[view] = pa.Table.from_batches(list(batches), schema=schema)
        plan = dc_replace(native.plan, views=views)  # type: ignore[type-var]
        return DuckDBArchive.execute(self, plan, maxrec, top, context)

    def result_key(self, native) -> str | None:
        return None

    def _open(self, loader: Loader, context, progress: dict):
        """(batches, schema) of one view."""
        if loader.xm is not None:
            return crossmatch_batches(self, loader, context, progress)
        cat, b = loader.catalog, loader.bounds
        parts, ranges = cat.select(b.regions or None)
        keep = cat.partitions_of(b.filters) if b.by_id else None
        if keep is not None:
            parts = [p for p in parts if (p.order, p.pixel) in keep]
        if not b.regions and not b.by_id:
            limit = self.config.async_scan_rows if context is not None and context.job_id else self.config.scan_rows
            if cat.nrows > limit:
                how = (
                    ""
                    if context is not None and context.job_id
                    else (
                        f"; an async job may read up to {self.config.async_scan_rows:,} rows"
                        if cat.nrows <= self.config.async_scan_rows
                        else ""
                    )
                )
                raise UsageFault(
                    f"{cat.table.qualified_name} would be read whole: all {len(parts)} partitions, {cat.nrows:,} rows "
                    f"(more than {limit:,}). Add a position, e.g. WHERE 1 = CONTAINS(POINT('ICRS', {cat.ra}, {cat.dec}), "
                    f"CIRCLE('ICRS', ra, dec, r)), or an id constraint"
                    + (f" such as {cat.table.id_column} = ..." if cat.table.id_column else "")
                    + how,
                    position=loader.position,
                )
        schema = _schema(cat, loader.columns)
        progress["partitions"] += len(parts)
        return self._read(cat, parts, loader.columns, b.filters, ranges, context, progress), schema

    def _read(self, cat: HatsCatalog, parts: list[Partition], columns, filters, ranges, context, progress):
        """The partitions' rows as batches, read by this process's threads or, for more than
        ``dask_partitions`` partitions and a configured scheduler, on the Dask cluster; at most
        a few partitions ahead of the consumer."""
        client = self.client() if len(parts) > self.config.dask_partitions else None
        ahead = 2 * self.config.threads
        if client is not None:
            from distributed import as_completed

            queue = iter(parts)
            live = as_completed(
                [client.submit(read_partition, p, columns, filters, ranges, pure=False) for p in take(queue, 2 * ahead)]
            )
            for fut in live:
                if context is not None:
                    context.check()
                table = fut.result()
                with cat._lock:
                    cat.partitions_read += 1
                for p in take(queue, 1):
                    live.add(client.submit(read_partition, p, columns, filters, ranges, pure=False))
                progress["partitions_done"] += 1
                yield from _batches(table, columns)
            return
        pending: deque = deque()
        queue = iter(parts)
        for p in take(queue, ahead):
            pending.append(self.pool.submit(cat.read, p, columns, filters, ranges))
        while pending:
            if context is not None:
                context.check()
            table = pending.popleft().result()
            for p in take(queue, 1):
                pending.append(self.pool.submit(cat.read, p, columns, filters, ranges))
            progress["partitions_done"] += 1
            yield from _batches(table, columns)

    # -- SCS --------------------------------------------------------------------------------
    def cone_search(self, table: Table, cone: Cone, maxrec: int | None, verb: int) -> RowStream:
        """SCS 1.03 §2: the partitions the cone touches (and the row groups of its HEALPix
        ranges), then the exact cone test, at most ``maxrec`` rows (OVERFLOW beyond)."""
        self.warm_up()
        cat = self.catalogs[table.name.lower()]
        cols = scs_columns(table, verb)
        names = [c.name for c in cols]
        read = list(dict.fromkeys(names + [cat.ra, cat.dec]))
        parts, ranges = cat.select([Region("circle", (cone.ra, cone.dec, cone.radius))])
        out = []
        for t in (cat.read(p, read, [], ranges) for p in parts):
            ra = t.column(cat.ra).to_numpy(zero_copy_only=False).astype(float)
            dec = t.column(cat.dec).to_numpy(zero_copy_only=False).astype(float)
            keep = np.asarray(separation(ra, dec, cone.ra, cone.dec) <= cone.radius)
            if keep.any():
                out.append(
                    normalize_batch(
                        pa.RecordBatch.from_arrays([t.column(n).combine_chunks() for n in names], names=names).filter(
                            pa.array(keep)
                        )
                    )
                )
        stream = RowStream(list(cols), [])
        stream.batches = limit_batches(out, maxrec, stream)
        return stream

    def availability(self) -> tuple[bool, str]:
        where = f"Dask scheduler {self.config.dask_scheduler}" if self.config.dask_scheduler else "in process"
        return True, f"{self.name}: {len(self.catalogs)} HATS catalogue(s), read {where}"

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()


def _names(term) -> set[str]:
    return {c.table.lower() for c in term.find_all(exp.Column) if c.table}


def _schema(cat: HatsCatalog, columns: list[str]) -> pa.Schema:
    full = cat.hc.schema
    return normalize_schema(pa.schema([full.field(c) for c in columns]))


def normalize_schema(schema: pa.Schema) -> pa.Schema:
    empty = pa.RecordBatch.from_pylist([], schema=schema)
    return normalize_batch(empty).schema


def _batches(table: pa.Table, columns: list[str]):
    table = table.select(columns)
    for b in table.to_batches(max_chunksize=65536):
        yield normalize_batch(b)
