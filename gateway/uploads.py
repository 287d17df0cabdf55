"""TAP_UPLOAD: tables sent with a query (TAP 1.1 §2.7.6 / §4; DALI 1.1 §3.4.5).

``UPLOAD=name,URI`` pairs (repeated, or ``;``-separated in one value).  URIs: ``param:part``
(an inline ``multipart/form-data`` part) and ``http(s)://`` (fetched with the configured size
and time limits; loopback, private, link-local and reserved addresses are refused unless
``uploads.allow_private_hosts``).  Content: VOTable in any serialisation (read with
astropy), or CSV with a header line (pyarrow).  Column names are kept as written in the FIELD
``name``; names that are not ADQL regular identifiers are delimited (``"RA (deg)"``).
Extended types keep their xtype: ``timestamp`` is held as a timestamp, ``point``/``circle``/
``polygon``/``interval`` as double arrays.  Tables are visible as ``TAP_UPLOAD.<name>`` for the
one query only and never in TAP_SCHEMA.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .faults import TransientFault, UsageFault
from .schema import ARROW_TYPES, Column, Table

SCHEMA = "TAP_UPLOAD"
IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
RESERVED = {  # ADQL 2.1 §2.1.3 reserved words most likely to be FIELD names
    "size",
    "date",
    "time",
    "timestamp",
    "user",
    "value",
    "values",
    "order",
    "group",
    "from",
    "select",
    "where",
    "top",
    "distinct",
    "as",
    "and",
    "or",
    "not",
    "null",
    "in",
    "is",
    "like",
    "between",
    "join",
    "on",
    "by",
    "position",
    "first",
    "last",
    "level",
    "section",
    "zone",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "abs",
    "point",
    "circle",
    "box",
    "polygon",
    "region",
    "distance",
    "contains",
    "intersects",
    "area",
    "coordsys",
    "coord1",
    "coord2",
    "lower",
    "upper",
    "table",
    "column",
    "key",
}


@dataclass
class UploadTable:
    """An uploaded table: ``table`` (metadata, schema ``TAP_UPLOAD``) and ``data``."""

    table: Table
    data: pa.Table

    @property
    def name(self) -> str:
        return self.table.name


def parse_upload_param(values: list[str]) -> list[tuple[str, str]]:
    """``UPLOAD`` values -> [(table name, URI)].  Raises UsageFault for a malformed pair, a
    name that is not an ADQL regular identifier, or two tables with the same name."""
    out, seen = [], set()
    for value in values:
        for pair in value.split(";"):
            pair = pair.strip()
            if not pair:
                continue
            name, sep, uri = pair.partition(",")
            name, uri = name.strip(), uri.strip()
            if not sep or not name or not uri:
                raise UsageFault(f"UPLOAD must be name,URI pairs, not {pair!r}")
            if not IDENT.match(name):
                raise UsageFault(f"UPLOAD table name {name!r} is not an ADQL regular identifier")
            if name.lower() in seen:
                raise UsageFault(f"UPLOAD names table {name!r} twice")
            seen.add(name.lower())
            out.append((name, uri))
    return out


class UploadReader:
    """Reads UPLOAD tables within ``config`` (:class:`gateway.config.UploadsConfig`) limits."""

    def __init__(self, config):
        self.cfg = config

    def read_all(
        self, values: list[str], open_part: Callable[[str], io.BufferedIOBase | None]
    ) -> dict[str, UploadTable]:
        """All tables named by ``UPLOAD`` values; ``open_part(name)`` gives an inline part's
        file or None.  Returns {lower-case name: UploadTable}.  Raises UsageFault/TransientFault."""
        pairs = parse_upload_param(values)
        if len(pairs) > self.cfg.max_tables:
            raise UsageFault(f"too many uploaded tables ({len(pairs)}); the limit is {self.cfg.max_tables}")
        out, budget = {}, self.cfg.max_bytes
        for name, uri in pairs:
            scheme = uri.split(":", 1)[0].lower()
            if scheme == "param":
                f = open_part(uri[len("param:") :])
                if f is None:
                    raise UsageFault(f"UPLOAD {name}: no multipart part named {uri[len('param:') :]!r} in the request")
                data = f.read(budget + 1)
            elif scheme in ("http", "https"):
                data = self.fetch(uri, budget)
            else:
                raise UsageFault(f"UPLOAD {name}: URI scheme {scheme!r} is not supported (use param: or http(s):)")
            if len(data) > budget:
                raise UsageFault(f"uploaded tables exceed the upload limit of {self.cfg.max_bytes} bytes")
            budget -= len(data)
            out[name.lower()] = self.read_table(name, data)
        return out

    def fetch(self, url: str, budget: int) -> bytes:
        """GET an http(s) upload (:class:`gateway.upstream.UpstreamSession`): public addresses
        only, checked where the connection is made (also across redirects), ``budget`` bytes
        and ``http_timeout`` seconds in all at most."""
        import requests

        from .upstream import UpstreamSession, iter_body

        session = UpstreamSession(
            None, self.cfg.http_timeout, deadline=self.cfg.http_timeout, allow_private=self.cfg.allow_private_hosts
        )
        try:
            with session.get(url, stream=True) as r:
                if r.status_code != 200:
                    raise UsageFault(f"UPLOAD URL {url!r} answered HTTP {r.status_code}")
                buf = bytearray()
                for chunk in iter_body(r, f"UPLOAD URL {url!r}", 65536):
                    buf += chunk
                    if len(buf) > budget:
                        raise UsageFault(f"uploaded tables exceed the upload limit of {self.cfg.max_bytes} bytes")
                return bytes(buf)
        except requests.Timeout:
            raise TransientFault(f"UPLOAD URL {url!r} did not answer within {self.cfg.http_timeout} s")
        except requests.RequestException as e:
            raise TransientFault(f"UPLOAD URL {url!r} could not be read ({type(e).__name__})")
        finally:
            session.close()

    def read_table(self, name: str, data: bytes) -> UploadTable:
        head = data[:200].lstrip(b"\xef\xbb\xbf \t\r\n")
        if head.startswith(b"<"):
            cols, arrays = _read_votable(name, data)
        else:
            cols, arrays = _read_csv(name, data)
        n = len(arrays[0]) if arrays else 0
        if n > self.cfg.max_rows:
            raise UsageFault(f"UPLOAD {name}: {n} rows; the limit is {self.cfg.max_rows}")
        seen = set()
        for c in cols:
            if c.name.lower() in seen:
                raise UsageFault(f"UPLOAD {name}: two columns are named {c.name!r} (names are case-insensitive)")
            seen.add(c.name.lower())
        table = Table(SCHEMA, name, cols, description="uploaded table")
        return UploadTable(table, pa.table(arrays, names=[c.name for c in cols]))


def _column(name: str, datatype: str, arraysize=None, xtype=None, unit=None, ucd=None, description=None) -> Column:
    delimited = not IDENT.match(name) or name.lower() in RESERVED
    return Column(
        name,
        datatype,
        arraysize=arraysize,
        xtype=xtype,
        unit=unit,
        ucd=ucd,
        description=description,
        delimited=delimited,
    )


def _read_votable(name: str, data: bytes):
    """Columns and arrays of an uploaded VOTable: numpy for an inline fixed-width BINARY or
    BINARY2 table (:func:`gateway.binary2.read_fixed_binary`, about 50 times faster for 10^5
    rows), astropy's parser for every other document."""
    from astropy.io.votable import parse

    from .binary2 import read_fixed_binary

    fast = read_fixed_binary(data)
    if fast is not None:
        return _fields_to_arrow(*fast, f"UPLOAD {name}")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vot = parse(io.BytesIO(data), verify="ignore")
            tab = vot.get_first_table()
    except Exception as e:  # noqa: BLE001 - any parse failure is the client's document
        raise UsageFault(f"UPLOAD {name}: not a readable VOTable ({str(e).splitlines()[0][:200]})")
    return votable_to_arrow(tab, f"UPLOAD {name}")


def votable_to_arrow(tab, what: str) -> tuple[list[Column], list[pa.Array]]:
    """Columns (FIELD metadata kept) and Arrow arrays of a parsed astropy VOTable ``TableElement``.
    Used for uploads and for upstream TAP answers.  Raises UsageFault for complex datatypes."""
    arr = tab.array
    values = [arr[f.ID] if f.ID in arr.dtype.names else arr[f.name] for f in tab.fields]
    return _fields_to_arrow(tab.fields, values, what)


def _fields_to_arrow(fields, columns, what: str) -> tuple[list[Column], list[pa.Array]]:
    cols, arrays = [], []
    for f, values in zip(fields, columns):
        dt = f.datatype
        size = f.arraysize if f.arraysize not in (None, "1") else None
        if dt in ("floatComplex", "doubleComplex"):
            raise UsageFault(f"{what}: column {f.name!r} has complex datatype {dt}, which is not supported")
        dt = "boolean" if dt == "bit" else dt
        col = _column(f.name, dt, size, f.xtype, str(f.unit) if f.unit is not None else None, f.ucd, f.description)
        cols.append(col)
        arrays.append(_to_arrow(values, col))
    return cols, arrays


def _to_arrow(values, col: Column) -> pa.Array:
    mask = np.ma.getmaskarray(values) if np.ma.isMaskedArray(values) else None
    data = np.ma.getdata(values)
    if col.datatype in ("char", "unicodeChar"):
        strs = [None if (mask is not None and mask[i]) else _text(v) for i, v in enumerate(data)]
        arr = pa.array(strs, pa.string())
        if col.xtype == "timestamp":
            return _timestamps(arr)
        return arr
    base = ARROW_TYPES[col.datatype]
    if col.arraysize:  # numeric arrays: one list per row
        rows: list[list | None] = []
        for i, v in enumerate(data):
            m = np.ma.getmaskarray(v) if np.ma.isMaskedArray(v) else None
            if mask is not None and np.ndim(mask[i]) == 0 and mask[i]:
                rows.append(None)
                continue
            v = np.ma.getdata(v)
            rows.append([None if (m is not None and m[k]) else x for k, x in enumerate(np.asarray(v).tolist())])
        fixed = col.arraysize.isdigit()
        typ = pa.list_(base, int(col.arraysize)) if fixed else pa.list_(base)
        return pa.array(rows, typ)
    if mask is not None and mask.ndim > 1:
        mask = mask.any(axis=tuple(range(1, mask.ndim)))  # type: ignore[assignment]
    return pa.array(np.asarray(data).astype(base.to_pandas_dtype()), base, mask=mask)


def _text(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def _timestamps(arr: pa.Array) -> pa.Array:
    """DALI 1.1 §3.3.3 timestamps -> timestamp[us]; strings that are no timestamps stay strings."""
    try:
        vals = [None if s is None else s.rstrip("Z") for s in arr.to_pylist()]
        return pa.array(
            np.array([np.datetime64(v) if v else np.datetime64("NaT") for v in vals], dtype="datetime64[us]"),
            pa.timestamp("us"),
            mask=pc.is_null(arr).to_numpy(zero_copy_only=False),
        )
    except ValueError:
        return arr


def _read_csv(name: str, data: bytes):
    import pyarrow.csv as pcsv

    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageFault(
            f"UPLOAD {name}: neither a VOTable nor a UTF-8 CSV table (byte {e.start} is not UTF-8)"
        ) from None
    try:
        t = pcsv.read_csv(io.BytesIO(data))
    except pa.ArrowInvalid as e:
        raise UsageFault(f"UPLOAD {name}: neither a VOTable nor a CSV table with a header line ({e})")
    cols, arrays = [], []
    for field_, col in zip(t.schema, t.columns):
        col = col.combine_chunks()
        typ = field_.type
        if pa.types.is_integer(typ):
            dt = "long"
            col = pc.cast(col, pa.int64())
        elif pa.types.is_floating(typ):
            dt = "double"
            col = pc.cast(col, pa.float64())
        elif pa.types.is_boolean(typ):
            dt = "boolean"
        elif pa.types.is_timestamp(typ):
            cols.append(_column(field_.name, "char", "*", "timestamp"))
            arrays.append(pc.cast(col, pa.timestamp("us")))
            continue
        else:
            dt = "char"
            col = pc.cast(col, pa.string())
        cols.append(_column(field_.name, dt, "*" if dt == "char" else None))
        arrays.append(col)
    return cols, arrays
