"""Vectorised cell encoding on Arrow/numpy arrays (no per-row Python objects).

Every encoder returns ``(data, lengths)``: a flat ``uint8`` array with all cells of a column
back to back, and each cell's byte length.  :func:`interleave` concatenates several such
columns row by row with one scatter, which is how BINARY/BINARY2 rows and TABLEDATA ``<TR>``
rows are built.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BE = {"short": ">i2", "int": ">i4", "long": ">i8", "float": ">f4", "double": ">f8", "unsignedByte": "u1"}
XML_FORBIDDEN = "[\x00-\x08\x0b\x0c\x0e-\x1f]"  # control characters XML 1.0 does not allow
XML_SPECIAL = "[&<>\x00-\x08\x0b\x0c\x0e-\x1f]"
NULL_INT = {"short": -32768, "int": -2147483648, "long": -9223372036854775808, "unsignedByte": 255}


def interleave(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise concatenation of per-row byte cells.  When every cell of every part has one
    width (numeric and fixed-size columns), rows are one copy of the parts side by side."""
    n = len(parts[0][1])
    if n and all(len(ln) and ln[0] == ln[-1] and (ln == ln[0]).all() for _, ln in parts):
        widths = [int(ln[0]) for _, ln in parts]
        out = np.empty((n, sum(widths)), np.uint8)
        at = 0
        for (data, _), w in zip(parts, widths):
            out[:, at : at + w] = data[: n * w].reshape(n, w)
            at += w
        return out.reshape(-1), np.full(n, at, np.int64)
    lens = [p[1].astype(np.int64) for p in parts]
    row_len = np.sum(lens, axis=0) if n else np.zeros(0, np.int64)
    row_start = np.zeros(n, np.int64)
    if n:
        np.cumsum(row_len[:-1], out=row_start[1:])
    out = np.empty(int(row_len.sum()), np.uint8)  # type: ignore[assignment]  # numpy shape typing
    within = np.zeros(n, np.int64)
    for (data, _), ln in zip(parts, lens):
        total = int(ln.sum())
        if total:
            src_start = np.zeros(n, np.int64)
            np.cumsum(ln[:-1], out=src_start[1:])
            idx = np.repeat(row_start + within - src_start, ln) + np.arange(total, dtype=np.int64)
            out[idx] = data[:total]
        within += ln
    return out, row_len


def fixed(data: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    data = np.ascontiguousarray(data)
    size = data.dtype.itemsize * (data.size // n if n else 0)
    return data.view(np.uint8).reshape(-1), np.full(n, size, np.int64)


def const(b: bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.tile(np.frombuffer(b, np.uint8), n), np.full(n, len(b), np.int64)


def string_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes of a string array (null -> empty)."""
    arr = pc.fill_null(arr.cast(pa.string()), "") if arr.null_count else arr.cast(pa.string())
    arr = pa.concat_arrays([arr]) if arr.offset else arr
    bufs = arr.buffers()
    offs = np.frombuffer(bufs[1], np.int32)[: len(arr) + 1]
    data = np.frombuffer(bufs[2], np.uint8)[offs[0] : offs[-1]] if bufs[2] is not None else np.zeros(0, np.uint8)
    return data, np.diff(offs).astype(np.int64)


def null_mask(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.zeros(len(arr), bool)
    return np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool)


def numeric_values(arr: pa.Array, datatype: str, fill) -> np.ndarray:
    if arr.null_count:
        arr = pc.fill_null(arr, fill)
    return np.asarray(arr.to_numpy(zero_copy_only=False))


def binary_cell(arr: pa.Array, datatype: str, arraysize: str | None, binary2: bool) -> tuple[np.ndarray, np.ndarray]:
    """VOTable BINARY/BINARY2 encoding of one column (VOTable 1.4 §5.4, §5.5)."""
    n = len(arr)
    if datatype == "char":
        data, lens = string_parts(arr)
        if not arraysize or (arraysize != "*" and not arraysize.endswith("*")):
            width = int(arraysize or 1)  # no arraysize: one character (VOTable 1.4 §2.2)
            buf = np.zeros((n, width), np.uint8)
            starts = np.zeros(n, np.int64)
            np.cumsum(lens[:-1], out=starts[1:]) if n else None
            clipped = np.minimum(lens, width)
            for j in range(width):  # width is small for fixed char columns
                sel = clipped > j
                buf[sel, j] = data[starts[sel] + j]
            return buf.reshape(-1), np.full(n, width, np.int64)
        prefix = lens.astype(">u4")
        return interleave([fixed(prefix, n), (data, lens)])
    if datatype == "unicodeChar":  # UCS-2 big-endian, 2 bytes per character (VOTable 1.4 §2.1)
        enc = [(v or "").encode("utf-16-be") for v in arr.to_pylist()]
        if not arraysize or (arraysize != "*" and not arraysize.endswith("*")):
            width = 2 * int(arraysize or 1)
            enc = [e[:width].ljust(width, b"\0") for e in enc]
            return np.frombuffer(b"".join(enc), np.uint8), np.full(n, width, np.int64)
        lens = np.array([len(e) for e in enc], np.int64)
        data = np.frombuffer(b"".join(enc), np.uint8)
        return interleave([fixed((lens // 2).astype(">u4"), n), (data, lens)])
    if datatype == "boolean":
        vals = numeric_values(arr, datatype, False).astype(bool)
        out = np.where(vals, ord("T"), ord("F")).astype(np.uint8)
        out[null_mask(arr)] = ord("?")
        return out, np.ones(n, np.int64)
    # a null number: NaN for floats; BINARY2 flags nulls, BINARY writes the integer's null value
    fill = np.nan if datatype in ("float", "double") else (0 if binary2 else NULL_INT.get(datatype, 0))
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        if arr.null_count:
            arr = pc.fill_null(arr, pa.scalar([], arr.type)) if not pa.types.is_fixed_size_list(arr.type) else arr
        arr = pa.concat_arrays([arr]) if arr.offset else arr
        if pa.types.is_fixed_size_list(arr.type):  # every slot, null ones too (flatten() drops those)
            size = arr.type.list_size
            vals = numeric_values(arr.values.slice(0, n * size), datatype, fill).reshape(n, size)
            if arr.null_count:
                vals = vals.astype(np.float64) if datatype in ("float", "double") else vals.copy()
                vals[null_mask(arr)] = fill
            vals = vals.reshape(-1).astype(BE[datatype])
            lens = np.full(n, size, np.int64)
        else:
            vals = numeric_values(arr.flatten(), datatype, 0).astype(BE[datatype])
            offs = np.asarray(arr.offsets.to_numpy(zero_copy_only=False), np.int64)
            lens = np.diff(offs)
        item = np.dtype(BE[datatype]).itemsize
        data = (vals.view(np.uint8).reshape(-1), lens * item)  # type: ignore[assignment]
        if arraysize == "*" or (arraysize or "").endswith("*"):
            return interleave([fixed(lens.astype(">u4"), n), data])  # type: ignore[list-item]
        return data  # type: ignore[return-value]
    vals = numeric_values(arr, datatype, fill)
    if datatype in ("float", "double") and arr.null_count:
        vals = vals.astype(np.float64)
        vals[null_mask(arr)] = np.nan
    return fixed(vals.astype(BE[datatype]), n)


def null_flags(arrays: list[pa.Array], n: int) -> tuple[np.ndarray, np.ndarray]:
    """BINARY2 per-row null flags: ⌊(N+7)/8⌋ bytes, MSB first (VOTable 1.4 §5.5)."""
    masks = np.zeros((n, len(arrays)), bool)
    for j, a in enumerate(arrays):
        masks[:, j] = null_mask(a)
    packed = np.packbits(masks, axis=1, bitorder="big")
    return packed.reshape(-1), np.full(n, packed.shape[1], np.int64)


def text_cells(arr: pa.Array, datatype: str, escape_xml: bool) -> pa.Array:
    """String form of every cell (null -> null): numbers in shortest round-trip form, arrays
    space-separated, NaN as ``NaN`` (VOTable 1.4 §6)."""
    t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        inner = (
            arr.cast(pa.list_(pa.string()))
            if not pa.types.is_fixed_size_list(t)
            else arr.cast(pa.list_(pa.string(), t.list_size)).cast(pa.list_(pa.string()))
        )
        out = pc.binary_join(inner, " ")
    elif datatype == "boolean":
        out = pc.if_else(arr, "T", "F")
    elif pa.types.is_floating(t):
        out = arr.cast(pa.string())
        if pc.all(pc.is_finite(arr)).as_py() is False:  # None: every cell null; True: nothing to respell
            out = pc.replace_substring(out, "nan", "NaN")
            out = pc.replace_substring_regex(out, "^inf$", "+Inf")
            out = pc.replace_substring(out, "-inf", "-Inf")
    else:
        out = arr.cast(pa.string())
    if escape_xml and pa.types.is_string(t) and pc.any(pc.match_substring_regex(out, XML_SPECIAL)).as_py():
        out = pc.replace_substring(out, "&", "&amp;")
        out = pc.replace_substring(out, "<", "&lt;")
        out = pc.replace_substring(out, ">", "&gt;")
        out = pc.replace_substring_regex(out, XML_FORBIDDEN, "?")
    return out
