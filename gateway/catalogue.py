"""The catalogue: every configured archive, its tables, and TAP_SCHEMA built from them.

``Catalogue.lookup(schema, table)`` resolves ADQL table names (regular identifiers
case-insensitive) to ``(archive_name, Table)`` for :mod:`gateway.adql.validate`.
"""

from __future__ import annotations

import pyarrow as pa

from .archive import Archive, ArchiveConfig
from .engine import DuckDBArchive
from .schema import Column, ForeignKey, Table

TS = "TAP_SCHEMA"


def _c(name, datatype, desc, arraysize=None, ucd=None, principal=True, delimited=False, unit=None):
    return Column(
        name,
        datatype,
        arraysize=arraysize,
        description=desc,
        ucd=ucd,
        principal=principal,
        std=True,
        delimited=delimited,
        unit=unit,
    )


TAP_SCHEMA_TABLES = [
    Table(
        TS,
        "schemas",
        [
            _c("schema_name", "char", "schema name for reference to tap_schema.schemas", "*", "meta.id"),
            _c("utype", "char", "lists the utypes of schemas in the tableset", "*", "meta.ucd"),
            _c("description", "char", "describes schemas in the tableset", "*", "meta.note"),
            _c("schema_index", "int", "recommended sort order when listing schemas", None, "meta.number"),
        ],
        "description of schemas in this tableset",
    ),
    Table(
        TS,
        "tables",
        [
            _c("schema_name", "char", "the schema this table belongs to", "*", "meta.id"),
            _c("table_name", "char", "the fully qualified table name", "*", "meta.id"),
            _c("table_type", "char", "one of: table view", "*", "meta.code"),
            _c("utype", "char", "lists the utype of tables in the tableset", "*", "meta.ucd"),
            _c("description", "char", "describes tables in the tableset", "*", "meta.note"),
            _c("table_index", "int", "recommended sort order when listing tables", None, "meta.number"),
        ],
        "description of tables in this tableset",
    ),
    Table(
        TS,
        "columns",
        [
            _c("table_name", "char", "the table this column belongs to", "*", "meta.id"),
            _c("column_name", "char", "the column name", "*", "meta.id"),
            _c("datatype", "char", "lists the VOTable datatypes of columns in the tableset", "*", "meta.code"),
            _c("arraysize", "char", "lists the VOTable arraysize of columns in the tableset", "*", "meta.code"),
            _c("xtype", "char", "a DALI or custom extended type annotation", "*", "meta.code"),
            _c("size", "int", "deprecated: use arraysize", None, "meta.number", delimited=True),
            _c("description", "char", "describes the columns in the tableset", "*", "meta.note"),
            _c("utype", "char", "lists the utypes of columns in the tableset", "*", "meta.ucd"),
            _c("unit", "char", "lists the unit used for column values in the tableset", "*", "meta.unit"),
            _c("ucd", "char", "lists the UCDs of columns in the tableset", "*", "meta.ucd"),
            _c("indexed", "int", "an indexed column; 1 means 1, 0 means 0", None, "meta.code"),
            _c("principal", "int", "a principal column; 1 means 1, 0 means 0", None, "meta.code"),
            _c("std", "int", "a standard column; 1 means 1, 0 means 0", None, "meta.code"),
            _c("column_index", "int", "recommended sort order when listing columns", None, "meta.number"),
        ],
        "description of columns in this tableset",
    ),
    Table(
        TS,
        "keys",
        [
            _c("key_id", "char", "unique key to join to tap_schema.key_columns", "*", "meta.id"),
            _c("from_table", "char", "the table with the foreign key", "*", "meta.id"),
            _c("target_table", "char", "the table with the primary key", "*", "meta.id"),
            _c("description", "char", "describes keys in the tableset", "*", "meta.note"),
            _c("utype", "char", "lists the utype of keys in the tableset", "*", "meta.ucd"),
        ],
        "description of foreign keys in this tableset",
    ),
    Table(
        TS,
        "key_columns",
        [
            _c("key_id", "char", "key to join to tap_schema.keys", "*", "meta.id"),
            _c("from_column", "char", "column in the from_table", "*", "meta.id"),
            _c("target_column", "char", "column in the target_table", "*", "meta.id"),
        ],
        "description of foreign key columns in this tableset",
    ),
]
TAP_SCHEMA_KEYS = [
    ("schemas", ForeignKey("ts_tables_schema", "TAP_SCHEMA.schemas", ("schema_name",), ("schema_name",)), "tables"),
    ("tables", ForeignKey("ts_columns_table", "TAP_SCHEMA.tables", ("table_name",), ("table_name",)), "columns"),
    ("tables", ForeignKey("ts_keys_from", "TAP_SCHEMA.tables", ("from_table",), ("table_name",)), "keys"),
    ("tables", ForeignKey("ts_keys_target", "TAP_SCHEMA.tables", ("target_table",), ("table_name",)), "keys"),
    ("keys", ForeignKey("ts_keycols_key", "TAP_SCHEMA.keys", ("key_id",), ("key_id",)), "key_columns"),
]
for _, fk, frm in TAP_SCHEMA_KEYS:
    next(t for t in TAP_SCHEMA_TABLES if t.name == frm).foreign_keys.append(fk)


class TapSchemaArchive(DuckDBArchive):
    """TAP_SCHEMA 1.1 (TAP 1.1 §4) as a queryable archive, generated from the catalogue."""

    kind = "tap_schema"

    def fill(self, schemas: list[tuple[str, str | None]], tables: list[Table]) -> None:
        cur = self.cursor()
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{TS}"')
        rows: dict[str, list] = {
            "schemas": [(s, None, d, i) for i, (s, d) in enumerate(schemas)],
            "tables": [
                (t.schema, t.qualified_name, t.table_type, t.utype, t.description, i) for i, t in enumerate(tables)
            ],
            "columns": [
                (
                    t.qualified_name,
                    c.adql_name,
                    c.datatype,
                    c.arraysize,
                    c.xtype,
                    _size(c.arraysize),
                    c.description,
                    c.utype,
                    c.unit,
                    c.ucd,
                    int(c.indexed),
                    int(c.principal),
                    int(c.std),
                    j,
                )
                for t in tables
                for j, c in enumerate(t.columns)
            ],
            "keys": [
                (fk.key_id, t.qualified_name, fk.target_table, fk.description, None)
                for t in tables
                for fk in t.foreign_keys
            ],
            "key_columns": [
                (fk.key_id, fc, tc)
                for t in tables
                for fk in t.foreign_keys
                for fc, tc in zip(fk.from_columns, fk.target_columns)
            ],
        }
        for t in TAP_SCHEMA_TABLES:
            arrays = []
            for j, c in enumerate(t.columns):
                typ = pa.int32() if c.datatype == "int" else pa.string()
                arrays.append(pa.array([r[j] for r in rows[t.name]], type=typ))
            data = pa.table(arrays, names=[c.name for c in t.columns])  # noqa: F841 (used by duckdb)
            cur.execute(f'CREATE OR REPLACE TABLE "{TS}"."{t.name}" AS SELECT * FROM data')
        cur.close()

    def tables(self):
        return TAP_SCHEMA_TABLES


def _size(arraysize: str | None) -> int | None:
    if not arraysize:
        return None
    a = arraysize.rstrip("*")
    return int(a) if a.isdigit() and "x" not in arraysize else None


class Catalogue:
    """All archives of one app and their tables (TAP_SCHEMA first)."""

    def __init__(self, archives: dict[str, Archive]):
        self.tap_schema = TapSchemaArchive(
            "tap_schema", ArchiveConfig(kind="tap_schema", title="TAP_SCHEMA"), base_dir=None
        )  # type: ignore[arg-type]
        self.archives: dict[str, Archive] = {"tap_schema": self.tap_schema, **archives}
        self._tables: list[tuple[str, Table]] = []
        schemas: list[tuple[str, str | None]] = [(TS, "a TAP-standard mandated schema to describe tablesets")]
        for t in TAP_SCHEMA_TABLES:
            self._tables.append(("tap_schema", t))
        for name, arch in archives.items():
            for t in arch.tables():
                if self.lookup(t.schema, t.name):
                    raise ValueError(f"table {t.qualified_name} is declared by two archives")
                self._tables.append((name, t))
                if t.schema not in [s for s, _ in schemas]:
                    schemas.append((t.schema, arch.config.description or arch.title))
        self.schemas = schemas
        self.tap_schema.fill(schemas, [t for _, t in self._tables])

    def lookup(self, schema: str | None, table: str) -> tuple[str, Table] | None:
        hits = [
            (a, t)
            for a, t in self._tables
            if t.name.lower() == table.lower() and (schema is None or t.schema.lower() == schema.lower())
        ]
        return hits[0] if len(hits) == 1 else None

    def qualified_names(self) -> list[str]:
        return [t.qualified_name for _, t in self._tables]

    def udfs(self) -> dict[str, tuple[list, list[str]]]:
        """ADQL user-defined functions: upper-case name -> ([Udf forms], [archive names])."""
        out: dict[str, tuple[list, list[str]]] = {}
        for name, arch in self.archives.items():
            for u in arch.udfs():
                forms, owners = out.setdefault(u.name.upper(), ([], []))
                if u.form not in [f.form for f in forms]:
                    forms.append(u)
                if name not in owners:
                    owners.append(name)
        return out

    def tables(self) -> list[tuple[str, Table]]:
        return list(self._tables)

    def table(self, qualified: str) -> tuple[str, Table] | None:
        if "." not in qualified:
            return None
        s, t = qualified.split(".", 1)
        return self.lookup(s, t)


class UploadOverlay:
    """The catalogue seen by one query with uploads: ``TAP_UPLOAD.<name>`` resolves to the
    uploaded tables (archive ``tap_upload``); everything else to ``base`` (TAP 1.1 §2.7.6)."""

    ARCHIVE = "tap_upload"

    def __init__(self, base: Catalogue, uploads: dict):
        self.base = base
        self.uploads = uploads

    def lookup(self, schema: str | None, table: str) -> tuple[str, Table] | None:
        if schema is not None and schema.lower() == "tap_upload":
            u = self.uploads.get(table.lower())
            return (self.ARCHIVE, u.table) if u is not None else None
        return self.base.lookup(schema, table)

    def qualified_names(self) -> list[str]:
        return self.base.qualified_names() + [u.table.qualified_name for u in self.uploads.values()]

    def udfs(self):
        return self.base.udfs()
