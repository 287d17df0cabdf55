"""FITS binary-table writer (astropy).  FITS needs the row count in the header before the data,
so the (MAXREC-bounded) result is gathered first and then written; nulls become NaN for floats
and TNULL for integers (astropy's masked-column handling)."""
from __future__ import annotations

import io
from typing import Iterator

import numpy as np
import pyarrow as pa
from astropy.io import fits
from astropy.table import MaskedColumn, Table

from ..rowstream import RowStream


def write_fits(stream: RowStream, infos) -> Iterator[bytes]:
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
            values = np.asarray(arr.fill_null(0 if c.datatype not in ("float", "double") else np.nan)
                                .to_numpy(zero_copy_only=False)) if arr.null_count else \
                np.asarray(arr.to_numpy(zero_copy_only=False))
            if c.datatype == "boolean":
                values = values.astype(bool)
        col = MaskedColumn(values, name=c.name, unit=c.unit, description=c.description,
                           mask=mask if mask is not None and mask.any() and c.datatype not in ("float", "double") else None)
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
    return {"short": np.int16, "int": np.int32, "long": np.int64, "float": np.float32, "double": np.float64,
            "boolean": bool, "unsignedByte": np.uint8}.get(c.datatype, str)
