"""Declared table metadata: the one source of TAP_SCHEMA, VOSI ``/tables`` and result FIELDs.

A :class:`Column` carries VOTable typing (``datatype``, ``arraysize``, ``xtype``; VOTable 1.4 §2.1,
DALI 1.1 §3.3 xtypes) plus ``unit`` (VOUnits), ``ucd`` (UCD1+), ``utype``, ``description`` and
the TAP_SCHEMA flags ``principal``, ``indexed``, ``std`` (TAP 1.1 §4.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pyarrow as pa

VOTABLE_DATATYPES = {
    "boolean",
    "bit",
    "unsignedByte",
    "short",
    "int",
    "long",
    "char",
    "unicodeChar",
    "float",
    "double",
    "floatComplex",
    "doubleComplex",
}

#: Arrow types of the VOTable scalar datatypes (VOTable 1.4 §2.1): how every archive reads an
#: upstream's typed cells (CSV, VOTable) and how uploads and the planner hold them
ARROW_TYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "bit": pa.bool_(),
    "unsignedByte": pa.uint8(),
    "short": pa.int16(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "char": pa.string(),
    "unicodeChar": pa.string(),
}


@dataclass(frozen=True)
class Column:
    """One column.  ``name`` is the ADQL name (lower-case regular identifier, or the exact
    text of a delimited identifier when ``delimited``)."""

    name: str
    datatype: str
    arraysize: str | None = None
    xtype: str | None = None
    unit: str | None = None
    ucd: str | None = None
    utype: str | None = None
    description: str | None = None
    principal: bool = False
    indexed: bool = False
    std: bool = False
    delimited: bool = False

    def __post_init__(self):
        if self.datatype not in VOTABLE_DATATYPES:
            raise ValueError(f"column {self.name!r}: unknown VOTable datatype {self.datatype!r}")

    @property
    def adql_name(self) -> str:
        """Name as written in TAP_SCHEMA (quoted when delimited)."""
        return f'"{self.name}"' if self.delimited else self.name

    def __deepcopy__(self, memo):  # immutable; ADQL ASTs carry columns in node.meta, copied per query
        return self

    def renamed(self, name: str) -> Column:
        return replace(self, name=name, delimited=False)


@dataclass
class Table:
    """One table of an archive.  ``schema`` is the ADQL schema name; ``ra_column`` /
    ``dec_column`` / ``id_column`` mark a positional table (enables SCS)."""

    schema: str
    name: str
    columns: list[Column]
    description: str | None = None
    utype: str | None = None
    table_type: str = "table"
    ra_column: str | None = None
    dec_column: str | None = None
    id_column: str | None = None
    nrows: int | None = None
    foreign_keys: list[ForeignKey] = field(default_factory=list)

    def __deepcopy__(self, memo):  # shared catalogue metadata: an AST copy keeps the reference
        return self

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"

    def column(self, name: str) -> Column | None:
        low = name.lower()
        for c in self.columns:
            if (c.delimited and c.name == name) or (not c.delimited and c.name.lower() == low):
                return c
        return None

    @property
    def positional(self) -> bool:
        return bool(self.ra_column and self.dec_column)


@dataclass(frozen=True)
class ForeignKey:
    """A TAP_SCHEMA key: ``from_columns`` of this table reference ``target_table``."""

    key_id: str
    target_table: str
    from_columns: tuple[str, ...]
    target_columns: tuple[str, ...]
    description: str | None = None
