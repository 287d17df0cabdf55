"""FITS binary-table writer (FITS 4.0 §7.3; astropy for the headers).

FITS needs the row count (``NAXIS2``) and every field's width in the header before the data.
When the stream can count its rows first (:attr:`RowStream.count`, the DuckDB archives) and
every column has a fixed width, the table is streamed: the header goes out after the count and
the query's first batch, then each batch as big-endian rows, so memory stays at one batch
whatever the size.  Otherwise (variable-length strings or arrays, upstream archives) the
MAXREC-bounded result is gathered first and written by astropy.  Nulls are NaN for floats,
``TNULLn`` for integers (FITS 4.0 §7.3.2) and 0 for logicals; strings shorter than the field
end with NUL (§7.3.3.1)."""

from __future__ import annotations

import io
import itertools
import logging
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from astropy.io import fits
from astropy.table import MaskedColumn, Table

from ..faults import FatalFault
from ..rowstream import RowStream
from ..schema import Column
from . import cells

BLOCK = 2880
TFORM = {"short": "I", "int": "J", "long": "K", "float": "E", "double": "D", "unsignedByte": "B", "boolean": "L"}
log = logging.getLogger("gateway.fits")


def write_fits(stream: RowStream, infos) -> Iterator[bytes]:
    """The result as a FITS file: an empty primary HDU and one BINTABLE with ``TUCDn`` and,
    when MAXREC cut the result, ``QUERYST = 'OVERFLOW'``.  Faults of the query (counting, first
    batch) raise before the first byte, so the caller can still answer with an error document."""
    forms = fixed_forms(stream.columns) if stream.count is not None else None
    if forms is not None:
        yield from _stream_fits(stream, forms)
    else:
        yield from _gathered_fits(stream)


def fixed_forms(cols: list[Column]) -> list[str] | None:
    """The ``TFORMn`` of each column when all have a fixed width, else None."""
    out = []
    for c in cols:
        n = c.arraysize
        if n is not None and not n.isdigit():
            return None  # variable length ("*", "n*") or multi-dimensional
        if c.datatype == "char":
            out.append(f"{n or 1}A")
        elif c.datatype in TFORM and (n is None or c.datatype != "boolean"):
            out.append(f"{n or ''}{TFORM[c.datatype]}")
        else:
            return None  # unicodeChar, arrays of logicals
    return out


def _header(cols: list[Column], forms: list[str], rows: int, overflow: bool) -> bytes:
    fcols = [
        fits.Column(name=c.name, format=f, unit=c.unit, null=cells.NULL_INT.get(c.datatype))
        for c, f in zip(cols, forms)
    ]
    hdu = fits.BinTableHDU.from_columns(fcols, nrows=0)
    hdu.header["NAXIS2"] = rows
    for i, c in enumerate(cols, start=1):
        if c.ucd:
            hdu.header[f"TUCD{i}"] = c.ucd
    if overflow:
        hdu.header["QUERYST"] = ("OVERFLOW", "DALI QUERY_STATUS: result truncated at MAXREC")
    return fits.PrimaryHDU().header.tostring().encode() + hdu.header.tostring().encode()


def _fits_cell(arr: pa.Array, c: Column) -> tuple[np.ndarray, np.ndarray]:
    """One column of a batch as FITS cells: VOTable BINARY's big-endian cells (nulls NaN or
    the ``TNULLn`` value, short strings NUL-padded), logicals 'T', 'F' or 0 for null."""
    if c.datatype == "boolean":
        vals = cells.numeric_values(arr, "boolean", False).astype(bool)
        out = np.where(vals, ord("T"), ord("F")).astype(np.uint8)
        out[cells.null_mask(arr)] = 0
        return out, np.ones(len(arr), np.int64)
    return cells.binary_cell(arr, c.datatype, c.arraysize, False)


def _stream_fits(stream: RowStream, forms: list[str]) -> Iterator[bytes]:
    cols = stream.columns
    assert stream.count is not None  # FITS streams only counted answers (write_fits)
    rows, overflow = stream.count()
    batches = iter(stream)
    first = next(batches, None)  # the query's own errors come before the first byte too
    yield _header(cols, forms, rows, overflow)
    written = nbytes = 0
    for b in itertools.chain([first] if first is not None else [], batches):
        if not b.num_rows:
            continue
        if written + b.num_rows > rows:
            raise FatalFault(f"the result has more rows than the {rows} counted")
        data, _ = cells.interleave([_fits_cell(b.column(j), c) for j, c in enumerate(cols)])
        written += b.num_rows
        nbytes += data.size
        yield data.tobytes()
    if written != rows:  # cannot be reported in FITS: break the response off rather than pad it
        log.error("FITS stream: %d rows written, %d counted", written, rows)
        raise FatalFault(f"the result has {written} rows, not the {rows} counted")
    yield b"\0" * (-nbytes % BLOCK)


def _gathered_fits(stream: RowStream) -> Iterator[bytes]:
    batches = [b for b in stream if b.num_rows]
    cols = stream.columns
    t = Table()
    for j, c in enumerate(cols):
        arrs = [b.column(j) for b in batches]
        arr = pa.concat_arrays(arrs) if arrs else None
        if arr is None:
            values = np.zeros(0, dtype=_np_type(c))
            mask = np.zeros(0, bool)
        elif pa.types.is_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
            pyl = arr.to_pylist()
            if c.arraysize and c.arraysize.isdigit():
                values = np.array([v if v is not None else [np.nan] * int(c.arraysize) for v in pyl], dtype=float)
            else:
                values = np.array([" ".join(repr(x) for x in v) if v else "" for v in pyl])
            mask = None
        elif c.datatype in ("char", "unicodeChar"):
            values = np.array(["" if v is None else v for v in arr.to_pylist()], dtype=str)
            mask = None
        else:
            mask = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool)
            fill = np.nan if c.datatype in ("float", "double") else (False if c.datatype == "boolean" else 0)
            values = (
                np.asarray(arr.fill_null(fill).to_numpy(zero_copy_only=False))
                if arr.null_count
                else np.asarray(arr.to_numpy(zero_copy_only=False))
            )
            if c.datatype == "boolean":
                values = values.astype(bool)
        col = MaskedColumn(
            values,
            name=c.name,
            unit=c.unit,
            description=c.description,
            mask=mask if mask is not None and mask.any() and c.datatype not in ("float", "double") else None,
        )
        t[c.name] = col
    hdu = fits.table_to_hdu(t)
    for i, c in enumerate(cols, start=1):
        if c.ucd:
            hdu.header[f"TUCD{i}"] = c.ucd
    if stream.overflow:
        hdu.header["QUERYST"] = ("OVERFLOW", "DALI QUERY_STATUS: result truncated at MAXREC")
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    yield buf.getvalue()


def _np_type(c):
    return {
        "short": np.int16,
        "int": np.int32,
        "long": np.int64,
        "float": np.float32,
        "double": np.float64,
        "boolean": bool,
        "unsignedByte": np.uint8,
    }.get(c.datatype, str)
