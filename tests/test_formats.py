"""The streaming writers on batches with the awkward values: NaN, ±Inf, nulls, XML-special and
control characters, several batches.  Every serialization is read back with astropy and must
give the same table (VOTable 1.4 §5-6)."""

from __future__ import annotations

import io
import math

import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits
from astropy.io.votable import parse
from astropy.table import Table

from gateway.formats.fits import write_fits
from gateway.formats.votable import tabledata_rows, write_votable
from gateway.rowstream import RowStream
from gateway.schema import Column

COLS = [Column("id", "long"), Column("x", "double"), Column("m", "float"), Column("name", "char", "*")]
X = [1.5, float("nan"), float("inf"), float("-inf"), None, -0.25]
M = [21.25, None, float("nan"), 1e-7, 3.0, float("inf")]
NAMES = ["a&b", "<c>", None, "bell\x07", "plain", "z"]


def batches():
    t = pa.table(
        {
            "id": pa.array(range(6), pa.int64()),
            "x": pa.array(X, pa.float64()),
            "m": pa.array(M, pa.float32()),
            "name": pa.array(NAMES, pa.string()),
        }
    )
    return t.to_batches(max_chunksize=4)  # two batches: one with special values, one without


def read(serialization: str):
    body = b"".join(write_votable(RowStream(COLS, batches()), [], serialization))
    return body, parse(io.BytesIO(body)).get_first_table().array


def norm(v):
    """A float cell as astropy reads it: NaN is the VOTable float null, so both are None."""
    if v is None or v is np.ma.masked or math.isnan(v):
        return None
    return float(v)


@pytest.mark.parametrize("serialization", ["tabledata", "binary", "binary2"])
def test_special_values_round_trip(serialization):
    body, arr = read(serialization)
    assert list(arr["id"]) == list(range(6))
    assert [norm(v) for v in arr["x"]] == [norm(v) for v in X]
    assert [norm(v) for v in arr["m"]] == [norm(None if v is None else np.float32(v)) for v in M]
    names = [None if v is np.ma.masked else str(v) for v in arr["name"]]
    assert names[:2] == ["a&b", "<c>"] and names[4:] == ["plain", "z"]
    if serialization == "tabledata":  # XML 1.0 forbids U+0007: replaced, never written raw
        assert b"\x07" not in body and names[3] == "bell?"


def test_tabledata_spellings():
    rows = tabledata_rows(batches()[0], COLS).decode().splitlines()
    assert rows[0] == "<TR><TD>0</TD><TD>1.5</TD><TD>21.25</TD><TD>a&amp;b</TD></TR>"
    assert rows[1] == "<TR><TD>1</TD><TD>NaN</TD><TD></TD><TD>&lt;c&gt;</TD></TR>"
    assert rows[2] == "<TR><TD>2</TD><TD>+Inf</TD><TD>NaN</TD><TD></TD></TR>"
    assert rows[3] == "<TR><TD>3</TD><TD>-Inf</TD><TD>1e-7</TD><TD>bell?</TD></TR>"
    second = tabledata_rows(batches()[1], COLS).decode().splitlines()  # x all finite or null
    assert second == [
        "<TR><TD>4</TD><TD></TD><TD>3</TD><TD>plain</TD></TR>",
        "<TR><TD>5</TD><TD>-0.25</TD><TD>+Inf</TD><TD>z</TD></TR>",
    ]


FITS_COLS = [
    Column("id", "long"),
    Column("n", "int"),
    Column("s", "short"),
    Column("b", "unsignedByte"),
    Column("ok", "boolean"),
    Column("x", "double", unit="deg", ucd="pos.eq.ra"),
    Column("m", "float"),
    Column("code", "char", "3"),
    Column("p", "double", "2"),
]


def fits_batches(pulled: list):
    t = pa.table(
        {
            "id": pa.array(range(5), pa.int64()),
            "n": pa.array([1, None, 3, 4, 5], pa.int32()),
            "s": pa.array([None, 2, 3, 4, 5], pa.int16()),
            "b": pa.array([1, 2, None, 4, 5], pa.uint8()),
            "ok": pa.array([True, False, None, True, False]),
            "x": pa.array(X[:5], pa.float64()),
            "m": pa.array(M[:5], pa.float32()),
            "code": pa.array(["ab", "abc", None, "", "xyz"]),
            "p": pa.array([[1.0, 2.0], [3.0, 4.0], None, [5.0, 6.0], [7.0, 8.0]], pa.list_(pa.float64(), 2)),
        }
    )
    for b in t.to_batches(max_chunksize=2):
        pulled.append(b.num_rows)
        yield b


def test_fits_streamed_equals_gathered():
    """With a row count the FITS writer streams: its header goes out before the rows after the
    first batch are read, and the file reads back (astropy) the same as the gathered one."""
    pulled = []
    stream = RowStream(FITS_COLS, fits_batches(pulled), count=lambda: (5, True))
    chunks = write_fits(stream, [])
    header = next(chunks)
    assert pulled == [2] and header.startswith(b"SIMPLE  =") and len(header) % 2880 == 0
    body = b"".join(chunks)
    width = 8 + 4 + 2 + 1 + 1 + 8 + 4 + 3 + 16
    assert [body[r * width + 15] for r in range(5)] == [ord("T"), ord("F"), 0, ord("T"), ord("F")]  # L null: 0
    streamed = fits.open(io.BytesIO(header + body))[1]
    gathered = fits.open(io.BytesIO(b"".join(write_fits(RowStream(FITS_COLS, fits_batches([])), []))))[1]
    assert streamed.header["NAXIS2"] == 5 and streamed.header["QUERYST"] == "OVERFLOW"
    assert streamed.header["TUCD6"] == "pos.eq.ra" and streamed.header["TUNIT6"] == "deg"
    s, g = Table.read(streamed), Table.read(gathered)  # TNULLn applied: nulls masked
    for name in ("id", "n", "s", "b", "code"):
        assert [None if v is np.ma.masked else v for v in s[name]] == [
            None if v is np.ma.masked else v for v in g[name]
        ], name
    for name in ("x", "m", "p"):
        assert np.array_equal(np.ma.filled(s[name], np.nan), np.ma.filled(g[name], np.nan), equal_nan=True), name
    assert list(streamed.data["n"]) == [1, streamed.header["TNULL2"], 3, 4, 5]
    assert [None if v is np.ma.masked else int(v) for v in s["n"]] == [1, None, 3, 4, 5]
    assert [str(v) for v in s["code"]] == ["ab", "abc", "", "", "xyz"]


def test_fits_without_a_count_or_fixed_widths_is_gathered():
    """Variable-length strings have no FITS width before every row is seen: gathered."""
    pulled = []
    chunks = write_fits(RowStream(COLS, batches(), count=lambda: (6, False)), [])
    hdu = fits.open(io.BytesIO(b"".join(chunks)))[1]
    assert hdu.header["NAXIS2"] == 6 and [str(v) for v in hdu.data["name"]][:2] == ["a&b", "<c>"]
    stream = RowStream(FITS_COLS, fits_batches(pulled))
    next(write_fits(stream, []))
    assert pulled == [2, 2, 1]


def test_fits_count_mismatch_breaks_the_response_off():
    from gateway.faults import Fault

    chunks = write_fits(RowStream(FITS_COLS, fits_batches([]), count=lambda: (4, False)), [])
    with pytest.raises(Fault, match="more rows than the 4 counted"):
        b"".join(chunks)
    chunks = write_fits(RowStream(FITS_COLS, fits_batches([]), count=lambda: (9, False)), [])
    with pytest.raises(Fault, match="5 rows, not the 9 counted"):
        b"".join(chunks)
