"""Kind ``skymapper``: the SkyMapper Southern Survey through its native services
(REFERENCE.md §3): sm-cone (SCS), SkyMapper TAP when configured, bundled metadata.

* SCS on every configured catalogue (``dr2.master``, ``dr4.master``, ...) goes to sm-cone with
  ``RA``, ``DEC``, ``SR``, ``VERB``, ``CATALOG`` and ``RESPONSEFORMAT=CSV`` (parsed with pyarrow
  into the declared types); ``max_sr`` and ``max_rows`` are enforced with clear messages.
* ADQL: with ``tap_url`` it is forwarded to SkyMapper's TAP (schema names rewritten in the AST,
  by the ``ivoa`` kind this one builds on) with its known quirk handled: ``ORDER BY DISTANCE(...)``
  is rewritten to order by the selected alias.  Without ``tap_url`` a query must be bounded by a
  cone on the table's position (``CONTAINS(POINT, CIRCLE)=1`` or ``DISTANCE(...) < r``): the cone
  is fetched through sm-cone (``VERB=3``) and the whole query is evaluated exactly on those rows
  by the gateway's DuckDB engine (the residual).
* Metadata: SkyMapper's TAP_SCHEMA when reachable (kept in ``snapshot``), else the bundled
  :mod:`.metadata`.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.csv as pcsv
import requests
from pydantic import AnyHttpUrl, Field, model_validator
from sqlglot import exp

from gateway.adql.geometry import GeometryTranslator
from gateway.adql.validate import AdqlQuery, OutputColumn
from gateway.archive import Cone
from gateway.engine import normalize_batch, output_columns
from gateway.faults import TransientFault, UsageFault
from gateway.rowstream import RowStream, limit_batches
from gateway.schema import Table
from vo_gateway_ivoa.archive import ForwardPlan, IvoaArchive, IvoaConfig

from .metadata import BUNDLED

log = logging.getLogger("gateway.skymapper")
ARROW = {"boolean": pa.bool_(), "unsignedByte": pa.uint8(), "short": pa.int16(), "int": pa.int32(),
         "long": pa.int64(), "float": pa.float32(), "double": pa.float64(), "char": pa.string()}


class SkyMapperConfig(IvoaConfig):
    tap_url: AnyHttpUrl | None = Field(None, description="SkyMapper TAP, e.g. https://api.skymapper.nci.org.au/public/tap")
    schemas: dict[str, str] = Field(default_factory=lambda: {"dr2": "skymapper_dr2", "dr4": "skymapper_dr4"},
                                    description="SkyMapper schema -> ADQL schema name in the gateway")
    catalogs: list[str] = Field(default_factory=lambda: ["dr2.master", "dr4.master"],
                                description="SkyMapper tables served (sm-cone CATALOG values)")
    cone_url: AnyHttpUrl = Field("https://skymapper.anu.edu.au/sm-cone/public/query", description="sm-cone service")
    siap_url: AnyHttpUrl | None = Field(None, description="SIAP base, e.g. https://api.skymapper.nci.org.au/public/siap/dr4")
    max_sr: float = Field(1.0, gt=0, le=10, description="largest cone radius sent to sm-cone, degrees")
    max_rows: int = Field(1_000_000, ge=1, description="largest answer sm-cone gives")
    sample_position: tuple[float, float] = Field((33.639837321, -0.766719986), description="where 'any n rows' "
                                                 "queries (TOP n without WHERE/ORDER BY) take their rows, deg")

    @model_validator(mode="after")
    def _tables_are_catalogs(self):
        if self.tables is None:
            self.tables = list(self.catalogs)
        for c in self.catalogs:
            if c.split(".", 1)[0] not in self.schemas:
                raise ValueError(f"catalog {c}: its schema has no gateway name in schemas")
        return self


@dataclass
class ConePlan:
    """ADQL answered from one sm-cone call plus an exact residual evaluated by DuckDB.
    ``sample`` marks a query that asks for any n rows (no WHERE, ORDER BY, grouping or
    DISTINCT): the cone then grows around ``sample_position`` until it holds enough rows."""

    catalog: str
    cone: Cone
    sql: str
    view: str
    outputs: list[OutputColumn]
    sample: bool = False
    top: int | None = None


class SkyMapperArchive(IvoaArchive):
    kind = "skymapper"
    Config = SkyMapperConfig

    def upstream_urls(self) -> list:
        return super().upstream_urls() + [self.config.cone_url, self.config.siap_url]

    def load_tables(self, snap) -> list[Table]:
        if self.url is not None:
            try:
                return super().load_tables(snap)
            except ValueError as e:
                log.warning("%s: %s; using the bundled metadata", self.name, e)
        out = []
        for c in self.config.catalogs:
            if c not in BUNDLED:
                raise ValueError(f"no bundled metadata for {c}; configure tap_url to read it from SkyMapper's TAP")
            out.append(BUNDLED[c](self.config.schemas[c.split(".", 1)[0]]))
        return out

    @property
    def title(self) -> str:
        return self.config.title or "SkyMapper Southern Survey"

    def upstream_name(self, table: Table) -> str:
        return f"{self.to_upstream[table.schema.lower()]}.{table.name}"

    # -- ADQL -----------------------------------------------------------------------------
    def translate(self, query: AdqlQuery):
        if self.url is not None:
            _alias_distance_order(query.ast)
            return super().translate(query)
        return self._cone_plan(query)

    def execute(self, native, maxrec: int | None, top: int | None = None, context=None) -> RowStream:
        if isinstance(native, ForwardPlan):
            return super().execute(native, maxrec, top, context)
        actor = context.actor if context else None
        batch = self._cone(native.catalog, native.cone, 3, actor)
        want = (maxrec + 1) if maxrec is not None else self.config.max_rows
        if native.top is not None:
            want = min(want, native.top)
        radius = native.cone.radius
        while native.sample and batch.num_rows < want and radius < self.config.max_sr:
            radius = min(radius * 4, self.config.max_sr)
            batch = self._cone(native.catalog, Cone(native.cone.ra, native.cone.dec, radius), 3, actor)
        con = duckdb.connect()
        con.register(native.view, pa.Table.from_batches([batch]))
        sql = native.sql if maxrec is None else f"SELECT * FROM ({native.sql}) AS _q LIMIT {maxrec + 1}"
        try:
            table = con.execute(sql).to_arrow_table()
        except duckdb.Error as e:
            raise UsageFault(f"query failed: {str(e).splitlines()[0]}")
        finally:
            con.close()
        batches = [normalize_batch(b) for b in table.to_batches()] or \
            [normalize_batch(pa.RecordBatch.from_pylist([], schema=table.schema))]
        stream = RowStream(output_columns(native.outputs, batches[0].schema), [])
        stream.batches = limit_batches(batches, maxrec, stream)
        return stream

    def _cone_plan(self, query: AdqlQuery) -> ConePlan:
        tables = list(query.ast.find_all(exp.Table))
        if len(tables) != 1 or query.uploads:
            raise UsageFault("without SkyMapper's TAP this service answers queries on one table, bounded by a cone; "
                             "joins and subqueries need tap_url")
        node = tables[0]
        table: Table = node.meta["gw_table"]
        alias = node.alias_or_name
        cone = _find_cone(query.ast, alias, table)
        sample = cone is None and _any_rows(query.ast)
        if sample:
            cone = Cone(*self.config.sample_position, 0.05)
        if cone is None:
            raise UsageFault(f"add a cone on {table.qualified_name}: WHERE 1 = CONTAINS(POINT('ICRS', "
                             f"{table.ra_column}, {table.dec_column}), CIRCLE('ICRS', ra, dec, radius)) "
                             f"(radius <= {self.config.max_sr} deg); SkyMapper is searched by position here")
        tree = GeometryTranslator().rewrite(query.ast.copy())
        view = "sm_" + self.upstream_name(table).replace(".", "_")
        for t in tree.find_all(exp.Table):
            t.replace(exp.Table(this=exp.to_identifier(view, quoted=True),
                                alias=exp.TableAlias(this=exp.to_identifier(alias))))
        for col in tree.find_all(exp.Column):
            if col.args.get("db") is not None:
                col.set("db", None)
        return ConePlan(self.upstream_name(table), cone, tree.sql(dialect="duckdb"), view, query.output, sample,
                        query.top)

    # -- SCS ------------------------------------------------------------------------------
    def cone_search(self, table: Table, cone: Cone, maxrec: int | None, verb: int) -> RowStream:
        batch = self._cone(self.upstream_name(table), cone, verb, None)
        cols = [table.column(n) for n in batch.schema.names]
        stream = RowStream([c for c in cols if c is not None], [])
        stream.batches = limit_batches([batch], maxrec, stream)
        return stream

    def _cone(self, catalog: str, cone: Cone, verb: int, actor) -> pa.RecordBatch:
        """One sm-cone call (REFERENCE.md §3.1), parsed into the declared column types."""
        if cone.radius > self.config.max_sr:
            raise UsageFault(f"SkyMapper cone searches are limited to a radius of {self.config.max_sr} deg "
                             f"(asked {cone.radius:g} deg); split the area")
        params = {"RA": repr(cone.ra), "DEC": repr(cone.dec), "SR": repr(cone.radius), "VERB": str(verb),
                  "CATALOG": catalog, "RESPONSEFORMAT": "CSV"}
        try:
            r = self._session_for(actor).get(str(self.config.cone_url), params=params)
        except requests.Timeout:
            raise TransientFault(f"SkyMapper cone search did not answer within {self.config.timeout} s")
        except requests.RequestException as e:
            raise TransientFault(f"SkyMapper cone search unreachable ({type(e).__name__})")
        if r.status_code >= 500:
            raise TransientFault(f"SkyMapper cone search failed: HTTP {r.status_code} {r.text[:300]}")
        if r.status_code >= 400:
            raise UsageFault(f"SkyMapper cone search refused the request: {r.text.strip()[:300]}")
        table = next(t for t in self._tables if self.upstream_name(t) == catalog)
        batch = parse_csv(r.content, table)
        if batch.num_rows >= self.config.max_rows:
            raise UsageFault(f"the cone holds more than SkyMapper's limit of {self.config.max_rows} rows; "
                             "use a smaller radius")
        return batch


def parse_csv(data: bytes, table: Table) -> pa.RecordBatch:
    """sm-cone CSV -> one RecordBatch with the declared types (pyarrow; empty fields are null)."""
    head = data.split(b"\n", 1)[0].decode().strip().split(",")
    if not head or head == [""]:
        raise TransientFault("SkyMapper cone search sent an empty answer")
    types = {}
    for n in head:
        c = table.column(n)
        types[n] = ARROW.get(c.datatype, pa.string()) if c is not None else pa.string()
    try:
        t = pcsv.read_csv(io.BytesIO(data), convert_options=pcsv.ConvertOptions(
            column_types=types, null_values=[""], strings_can_be_null=True))
    except pa.ArrowInvalid as e:
        raise TransientFault(f"SkyMapper cone search sent unreadable CSV ({str(e)[:200]})")
    t = t.combine_chunks()
    return pa.RecordBatch.from_arrays([t.column(i).chunk(0) if t.column(i).num_chunks else pa.array([], types[n])
                                       for i, n in enumerate(t.column_names)], names=t.column_names)


def _constant(node: exp.Expression) -> float:
    if any(True for _ in node.find_all(exp.Column)):
        raise ValueError("not constant")
    with duckdb.connect() as con:
        return float(con.execute("SELECT " + node.sql(dialect="duckdb")).fetchone()[0])


def _conjuncts(where: exp.Expression):
    if isinstance(where, exp.And):
        yield from _conjuncts(where.this)
        yield from _conjuncts(where.expression)
    elif isinstance(where, exp.Paren):
        yield from _conjuncts(where.this)
    else:
        yield where


def _point_args(node) -> list:
    args = list(node.expressions)
    return args[-2:] if isinstance(node, exp.Anonymous) and node.name.upper() == "POINT" else []


def _is_pos(args, alias: str, table: Table) -> bool:
    names = [a.name.lower() if isinstance(a, exp.Column) and (not a.table or a.table.lower() == alias.lower()) else None
             for a in args]
    return names == [table.ra_column.lower(), table.dec_column.lower()]


def _find_cone(tree: exp.Select, alias: str, table: Table) -> Cone | None:
    """The cone of a top-level ``CONTAINS(POINT(ra, dec), CIRCLE(a, d, r)) = 1`` or
    ``DISTANCE(POINT(ra, dec), POINT(a, d)) < r`` conjunct on the table's position columns."""
    where = tree.args.get("where")
    if where is None:
        return None
    for cond in _conjuncts(where.this):
        try:
            if isinstance(cond, exp.EQ):
                f = cond.this if isinstance(cond.this, exp.Contains) else cond.expression
                one = cond.expression if f is cond.this else cond.this
                if isinstance(f, exp.Contains) and _constant(one) == 1:
                    p, c = f.this, f.expression
                    if _is_pos(_point_args(p), alias, table) and isinstance(c, exp.Anonymous) \
                            and c.name.upper() == "CIRCLE":
                        a, d, r = c.expressions[-3:]
                        return Cone(_constant(a), _constant(d), _constant(r))
            if isinstance(cond, (exp.LT, exp.LTE)) and isinstance(cond.this, exp.Anonymous) \
                    and cond.this.name.upper() == "DISTANCE":
                args = cond.this.expressions
                pts = args if len(args) == 2 else []
                if len(args) == 4:
                    pts = [exp.Anonymous(this="POINT", expressions=args[:2]),
                           exp.Anonymous(this="POINT", expressions=args[2:])]
                for mine, other in (pts, pts[::-1]) if pts else ():
                    if _is_pos(_point_args(mine), alias, table):
                        a, d = _point_args(other)
                        return Cone(_constant(a), _constant(d), _constant(cond.expression))
        except (ValueError, TypeError, duckdb.Error):
            continue
    return None


def _any_rows(tree: exp.Select) -> bool:
    """True when any rows of the table answer the query (TAP 1.1 §2.7.4: without ORDER BY a
    TOP/MAXREC result is an arbitrary subset): no WHERE, ORDER BY, GROUP BY, HAVING, DISTINCT
    or aggregate."""
    if any(tree.args.get(k) for k in ("where", "order", "group", "having", "distinct")):
        return False
    return not any(True for _ in tree.find_all(exp.AggFunc))


def _alias_distance_order(tree: exp.Select) -> None:
    """SkyMapper's TAP rejects ``ORDER BY DISTANCE(...)`` on the raw expression (REFERENCE.md
    §3.3): order by the alias of the same selected expression instead, or say what to do."""
    order = tree.args.get("order")
    if order is None:
        return
    for o in order.expressions:
        key = o.this
        if isinstance(key, exp.Anonymous) and key.name.upper() == "DISTANCE":
            match = next((e for e in tree.expressions if isinstance(e, exp.Alias) and e.this == key), None)
            if match is None:
                raise UsageFault("SkyMapper's TAP cannot ORDER BY DISTANCE(...) directly; select the DISTANCE "
                                 "with an alias and ORDER BY the alias")
            o.set("this", exp.column(match.alias, quoted=True))


__all__ = ["SkyMapperArchive", "SkyMapperConfig"]
