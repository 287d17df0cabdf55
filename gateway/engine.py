"""DuckDB as the gateway's embedded SQL engine, and :class:`DuckDBArchive`, the base of every
archive whose rows live in a DuckDB database (the embedded archive, TAP_SCHEMA, and any third
party that ingests files).

Translation: a validated ADQL AST -> geometry rewritten (:mod:`gateway.adql.geometry`) ->
``TOP``/``MAXREC`` as ``LIMIT`` -> DuckDB SQL text (sqlglot's DuckDB generator).
Execution streams ``pyarrow.RecordBatch`` objects (``fetch_record_batch``), never whole results.
Measured here (2 cores): a 1′ cone over the 482k-row dec-sorted Gaia table, 1.5 ms median.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from .adql.geometry import GeometryTranslator, Circle, Point
from .adql.validate import AdqlQuery, OutputColumn
from .archive import Archive, Capabilities, Cone
from .faults import FatalFault, UsageFault
from .rowstream import RowStream, limit_batches
from .schema import Column, Table

BATCH_ROWS = 16384
GEOMETRY = frozenset({"POINT", "CIRCLE", "BOX", "POLYGON", "CONTAINS", "INTERSECTS", "DISTANCE", "COORD1", "COORD2"})

ARROW_TO_VOTABLE = {
    pa.bool_(): ("boolean", None), pa.int8(): ("short", None), pa.int16(): ("short", None),
    pa.int32(): ("int", None), pa.int64(): ("long", None), pa.uint8(): ("unsignedByte", None),
    pa.uint16(): ("int", None), pa.uint32(): ("long", None), pa.uint64(): ("long", None),
    pa.float16(): ("float", None), pa.float32(): ("float", None), pa.float64(): ("double", None),
    pa.string(): ("char", "*"), pa.large_string(): ("char", "*"),
}


def votable_type(t: pa.DataType) -> tuple[str, str | None]:
    """VOTable (datatype, arraysize) for an Arrow type after :func:`normalize_batch`."""
    if t in ARROW_TO_VOTABLE:
        return ARROW_TO_VOTABLE[t]
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        dt, _ = votable_type(t.value_type)
        return dt, "*"
    return "char", "*"


def normalize_batch(b: pa.RecordBatch) -> pa.RecordBatch:
    """Cast engine-specific Arrow types (decimal, timestamps, dates, large strings, dictionary)
    to the small set the writers know."""
    cols, changed = [], False
    for col in b.columns:
        t = col.type
        if pa.types.is_decimal(t):
            col = pc.cast(col, pa.float64() if t.scale else pa.int64(), safe=False)
        elif pa.types.is_timestamp(t) or pa.types.is_date(t):
            col = pc.strftime(col, format="%Y-%m-%dT%H:%M:%S")  # DALI 1.1 §3.3.3; no zero fraction
            col = pc.replace_substring_regex(col, r"(\.\d*[1-9])0+$", r"\1")
            col = pc.replace_substring_regex(col, r"\.0+$", "")
        elif pa.types.is_large_string(t) or pa.types.is_dictionary(t):
            col = pc.cast(col, pa.string())
        elif pa.types.is_null(t):
            col = pa.nulls(len(col), pa.string())
        else:
            cols.append(col)
            continue
        changed = True
        cols.append(col)
    if not changed:
        return b
    return pa.RecordBatch.from_arrays(cols, names=b.schema.names)


def normalized_type(t: pa.DataType) -> pa.DataType:
    return normalize_batch(pa.RecordBatch.from_arrays([pa.nulls(0, t)], names=["x"])).schema.types[0]


def output_columns(outputs: list[OutputColumn], schema: pa.Schema) -> list[Column]:
    """FIELD metadata: declared metadata for column references, else typed from the engine."""
    cols = []
    for o, t in zip(outputs, schema.types):
        if o.column is not None:
            cols.append(o.column)
            continue
        dt, asz = votable_type(normalized_type(t))
        if o.xtype == "point":
            asz = "2"
        elif o.xtype == "circle":
            asz = "3"
        unit = "deg" if o.xtype else None
        cols.append(Column(o.name, dt, arraysize=asz, xtype=o.xtype, unit=unit))
    return cols


@dataclass
class SqlPlan:
    sql: str
    outputs: list[OutputColumn]
    maxrec: int | None
    views: dict[str, pa.Table] | None = None  # uploaded tables, registered per query cursor


class DuckDBArchive(Archive):
    """An archive served from a DuckDB database (``self.db``), with full ADQL pushdown."""

    capabilities = Capabilities(full_adql=True, cone=True, polygon=True, comparisons=True,
                                column_selection=True, order_by=True, top=True, joins=True, uploads=True,
                                geometry_functions=GEOMETRY)

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.db = duckdb.connect(":memory:", config={"threads": 2})
        self._lock = threading.Lock()

    def cursor(self):
        with self._lock:
            return self.db.cursor()

    # -- translation -----------------------------------------------------------------------
    def translate(self, query: AdqlQuery) -> SqlPlan:
        tree = GeometryTranslator().rewrite(query.ast.copy())
        views = {}
        for node in list(tree.find_all(exp.Table)):
            if node.meta.get("gw_archive") != "tap_upload":
                continue
            name = node.name.lower()
            view = f"tap_upload__{name}"
            views[view] = query.uploads[name].data
            alias = node.args.get("alias")
            new = exp.Table(this=exp.to_identifier(view, quoted=True),
                            alias=alias.copy() if alias is not None else exp.TableAlias(this=exp.to_identifier(node.name)))
            node.replace(new)
        for col in tree.find_all(exp.Column):  # TAP_UPLOAD.t.c -> t.c
            if col.args.get("db") is not None and col.text("db").lower() == "tap_upload":
                col.set("db", None)
        return SqlPlan(tree.sql(dialect="duckdb"), query.output, None, views or None)

    def limited_sql(self, plan: SqlPlan, top: int | None, maxrec: int | None) -> tuple[str, int | None]:
        """SQL with TAP 1.1 §2.7.4 MAXREC-vs-TOP semantics: returns (sql, overflow_limit)."""
        if maxrec == 0:
            return f"SELECT * FROM ({plan.sql}) AS _q LIMIT 0", None
        if maxrec is None or (top is not None and top <= maxrec):
            return plan.sql, None
        return f"SELECT * FROM ({plan.sql}) AS _q LIMIT {maxrec + 1}", maxrec

    def execute(self, native: SqlPlan, maxrec: int | None, top: int | None = None, context=None) -> RowStream:
        sql, limit = self.limited_sql(native, top, maxrec)
        return self.run_sql(sql, native.outputs, limit, views=native.views, context=context)

    def run_sql(self, sql: str, outputs: list[OutputColumn] | None, limit: int | None, params=None,
                views: dict[str, pa.Table] | None = None, context=None) -> RowStream:
        """Run ``sql`` on a fresh cursor; ``views`` are Arrow tables registered on that cursor
        only (uploads); ``context.on_cancel`` interrupts the running statement (UWS ABORT)."""
        cur = self.cursor()
        if context is not None:
            def interrupt():
                try:
                    cur.interrupt()
                except duckdb.Error:  # already closed: nothing left to stop
                    pass
            context.on_cancel(interrupt)
        try:
            for view, table in (views or {}).items():
                cur.register(view, table)
            cur.execute(sql, params or [])
            reader = cur.to_arrow_reader(BATCH_ROWS)
        except (duckdb.BinderException, duckdb.ConversionException, duckdb.InvalidInputException,
                duckdb.OutOfRangeException, duckdb.ParserException) as e:
            cur.close()
            raise UsageFault(f"query failed: {_clean(e)}")
        except duckdb.Error as e:
            cur.close()
            if context is not None:
                context.check()
            raise FatalFault(f"query failed in the database engine: {_clean(e)}")
        if outputs is None:
            outputs = [OutputColumn(n) for n in reader.schema.names]
        stream = RowStream(output_columns(outputs, reader.schema), [], on_close=cur.close)

        def batches():
            try:
                for b in reader:
                    yield normalize_batch(b)
            except duckdb.Error as e:
                if context is not None:
                    context.check()
                raise FatalFault(f"query failed while streaming: {_clean(e)}")
        stream.batches = limit_batches(batches(), limit, stream)
        return stream

    # -- SCS --------------------------------------------------------------------------------
    def cone_search(self, table: Table, cone: Cone, maxrec: int | None, verb: int) -> RowStream:
        if verb <= 1:
            names = [table.id_column, table.ra_column, table.dec_column]
            cols = [table.column(n) for n in names]
        elif verb == 2:
            cols = [c for c in table.columns if c.principal] or table.columns
        else:
            cols = table.columns
        pred = GeometryTranslator().cone(
            Point(exp.column(table.ra_column, quoted=True), exp.column(table.dec_column, quoted=True)),
            Circle(Point(exp.Literal.number(repr(cone.ra)), exp.Literal.number(repr(cone.dec))),
                   exp.Literal.number(repr(cone.radius))))
        select = ", ".join(f'"{c.name}"' for c in cols)
        sql = f'SELECT {select} FROM "{table.schema}"."{table.name}" WHERE {pred.sql(dialect="duckdb")}'
        if maxrec is not None:
            sql += f" LIMIT {maxrec + 1}"
        return self.run_sql(sql, [OutputColumn(c.name, c) for c in cols], maxrec)

    def availability(self) -> tuple[bool, str]:
        try:
            self.cursor().execute("SELECT 1").fetchall()
            return True, f"{self.name}: database answering"
        except duckdb.Error as e:  # pragma: no cover - only when the engine is broken
            return False, f"{self.name}: database error {_clean(e)}"

    def close(self) -> None:
        self.db.close()


def _clean(e: Exception) -> str:
    msg = str(e).split("\n")[0]
    for prefix in ("Binder Error: ", "Conversion Error: ", "Invalid Input Error: ", "Parser Error: ",
                   "Out of Range Error: "):
        msg = msg.replace(prefix, "")
    return msg
