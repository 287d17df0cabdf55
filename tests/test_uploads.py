"""TAP_UPLOAD (TAP 1.1 §2.7.6, DALI 1.1 §3.4.5) through the Flask test client."""

import io
import threading

import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits
from astropy.io.votable import parse
from astropy.table import MaskedColumn, Table

from gateway.testing import make_app, parse_votable, serve


@pytest.fixture
def upload_app(tmp_path):
    from conftest import demo_config

    app = make_app(demo_config(tmp_path, uploads={"max_bytes": 200_000}), load_entrypoints=True)
    yield app
    app.extensions["vo_gateway"].jobs.close()


@pytest.fixture
def c(upload_app):
    return upload_app.test_client()


def votable_bytes(t: Table, fmt: str) -> bytes:
    from astropy.io.votable import from_table

    vot = from_table(t)
    for f in vot.get_first_table().fields:  # BINARY needs explicit integer nulls
        if f.datatype in ("short", "int", "long"):
            f.values.null = {"short": -32768, "int": -(2**31), "long": -(2**63)}[f.datatype]
    buf = io.BytesIO()
    vot.to_xml(buf, tabledata_format=fmt)
    return buf.getvalue()


def every_type_table() -> Table:
    t = Table()
    t["id"] = np.array([1, 2, 3], np.int32)
    t["Ra J2000"] = [10.5, 20.25, np.nan]
    t["MixedCase"] = MaskedColumn(np.array([1, 2, 3], np.int16), mask=[False, True, False])
    t["big"] = MaskedColumn(np.array([2**62, -5, 0], np.int64), mask=[False, False, True])
    t["flag"] = [True, False, True]
    t["label"] = MaskedColumn(["a", "b c", ""], mask=[False, False, True])
    t["when"] = ["2020-01-01T12:00:00", "2021-06-30T23:59:59.5", "2000-01-01T00:00:00"]
    t["name"] = ["Orion Nébula", "M31", "ω Cen"]
    t["pos"] = np.array([[10.0, 20.0], [30.0, -40.0], [0.0, 90.0]])
    t["circ"] = np.array([[10.0, 20.0, 0.5], [30.0, -40.0, 1.0], [1.0, 2.0, 3.0]])
    t["iv"] = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    return t


def xtyped(data: bytes) -> bytes:
    """Mark the array columns with their DALI xtypes (astropy does not write them)."""
    for name, xtype in (("pos", "point"), ("circ", "circle"), ("iv", "interval"), ("when", "timestamp")):
        data = data.replace(f'name="{name}"'.encode(), f'name="{name}" xtype="{xtype}"'.encode(), 1)
    return data


@pytest.mark.parametrize("fmt", ["tabledata", "binary", "binary2"])
def test_every_type_round_trips(c, fmt):
    up = xtyped(votable_bytes(every_type_table(), fmt))
    r = c.post(
        "/tap/sync",
        data={
            "LANG": "ADQL",
            "QUERY": "SELECT * FROM TAP_UPLOAD.t1",
            "UPLOAD": "t1,param:tab",
            "tab": (io.BytesIO(up), "tab.vot"),
        },
        content_type="multipart/form-data",
    )
    assert r.status_code == 200, r.data
    out, status, _ = parse_votable(r.data)
    fields = {f.name: f for f in parse(io.BytesIO(r.data)).get_first_table().fields}
    assert status == "OK" and list(fields) == every_type_table().colnames
    out.rename_column("Ra_J2000", "Ra J2000")
    assert list(out["id"]) == [1, 2, 3] and out["id"].dtype == np.int32
    assert out["Ra J2000"][0] == 10.5 and out["Ra J2000"][2] is np.ma.masked  # NaN is the float null
    assert out["MixedCase"].dtype == np.int16 and out["MixedCase"].mask.tolist() == [False, True, False]
    assert out["big"][0] == 2**62 and out["big"].mask.tolist() == [False, False, True]
    assert list(out["flag"]) == [True, False, True]
    assert out["label"][1] == "b c" and (out["label"][2] is np.ma.masked or out["label"][2] == "")  # char null
    assert list(out["name"]) == ["Orion Nébula", "M31", "ω Cen"] and fields["name"].datatype == "unicodeChar"
    assert [str(v) for v in out["when"]] == ["2020-01-01T12:00:00", "2021-06-30T23:59:59.5", "2000-01-01T00:00:00"]
    assert out["pos"].tolist()[1] == [30.0, -40.0] and out["circ"].tolist()[0] == [10.0, 20.0, 0.5]
    assert fields["pos"].xtype == "point" and fields["circ"].xtype == "circle" and fields["iv"].xtype == "interval"
    assert fields["when"].xtype == "timestamp" and fields["MixedCase"].datatype == "short"


def test_delimited_names_and_crossmatch_with_embedded_table(c):
    t = Table({"Ra J2000": [180.0, 45.0], "DEC": [-60.0, 10.0], "label": ["x", "y"]})
    # take two real Gaia positions so the crossmatch has hits
    r = c.get(
        "/tap/sync",
        query_string={
            "LANG": "ADQL",
            "FORMAT": "csv",
            "QUERY": "SELECT TOP 2 ra, dec FROM demo.gaia_dr3_g10 ORDER BY source_id",
        },
    )
    rows = [tuple(map(float, line.split(","))) for line in r.data.decode().splitlines()[1:]]
    t["Ra J2000"], t["DEC"] = [p[0] for p in rows], [p[1] for p in rows]
    up = votable_bytes(t, "binary2")
    q = (
        'SELECT u.label, u."Ra J2000", g.source_id, DISTANCE(POINT(\'ICRS\', u."Ra J2000", u.dec), '
        "POINT('ICRS', g.ra, g.dec)) * 3600 AS sep FROM TAP_UPLOAD.mine AS u JOIN demo.gaia_dr3_g10 AS g "
        "ON 1 = CONTAINS(POINT('ICRS', g.ra, g.dec), CIRCLE('ICRS', u.\"Ra J2000\", u.dec, 1.0/3600)) ORDER BY u.label"
    )
    r = c.post(
        "/tap/sync",
        data={"LANG": "ADQL", "QUERY": q, "UPLOAD": "mine,param:m", "m": (io.BytesIO(up), "m")},
        content_type="multipart/form-data",
    )
    out, status, _ = parse_votable(r.data)
    assert status == "OK" and list(out["label"]) == ["x", "y"] and max(out["sep"]) < 1e-6
    assert parse(io.BytesIO(r.data)).get_first_table().fields[1].name == "Ra J2000"
    q2 = (
        "SELECT u.label FROM TAP_UPLOAD.mine AS u JOIN demo.gaia_dr3_g10 AS g "
        "ON DISTANCE(POINT('ICRS', g.ra, g.dec), POINT('ICRS', u.\"Ra J2000\", u.DEC)) < 0.0001"
    )
    r = c.post(
        "/tap/sync",
        data={"LANG": "ADQL", "QUERY": q2, "UPLOAD": "mine,param:m", "m": (io.BytesIO(up), "m")},
        content_type="multipart/form-data",
    )
    assert sorted(parse_votable(r.data)[0]["label"]) == ["x", "y"]
    # FITS streamed from a join with an upload: the row count is taken with the upload registered too
    q3 = (
        "SELECT g.source_id, DISTANCE(POINT('ICRS', g.ra, g.dec), POINT('ICRS', u.\"Ra J2000\", u.DEC)) AS d "
        "FROM TAP_UPLOAD.mine AS u JOIN demo.gaia_dr3_g10 AS g "
        "ON DISTANCE(POINT('ICRS', g.ra, g.dec), POINT('ICRS', u.\"Ra J2000\", u.DEC)) < 0.0001 ORDER BY g.source_id"
    )
    r = c.post(
        "/tap/sync",
        data={
            "LANG": "ADQL",
            "QUERY": q3,
            "UPLOAD": "mine,param:m",
            "RESPONSEFORMAT": "fits",
            "m": (io.BytesIO(up), "m"),
        },
        content_type="multipart/form-data",
    )
    assert r.status_code == 200, r.data
    hdu = fits.open(io.BytesIO(r.data))[1]
    assert hdu.header["NAXIS2"] == 2 and sorted(hdu.data["source_id"]) == list(hdu.data["source_id"])
    assert "TNULL1" in hdu.header  # the streaming writer declares every integer column's null
    # unquoted, the name is not a column (it is not a regular identifier)
    r = c.post(
        "/tap/sync",
        data={
            "LANG": "ADQL",
            "QUERY": "SELECT ra FROM TAP_UPLOAD.mine",
            "UPLOAD": "mine,param:m",
            "m": (io.BytesIO(up), "m"),
        },
        content_type="multipart/form-data",
    )
    assert r.status_code == 400 and b"ra" in r.data


def test_csv_upload_and_upload_errors(c):
    csv = b"id,ra,dec,name\n1,10.5,-3.25,alpha\n2,11.0,4.0,\n"
    r = c.post(
        "/tap/sync",
        data={
            "LANG": "ADQL",
            "QUERY": "SELECT id, ra, name FROM TAP_UPLOAD.c ORDER BY id",
            "UPLOAD": "c,param:f",
            "f": (io.BytesIO(csv), "f.csv"),
        },
        content_type="multipart/form-data",
    )
    out, status, _ = parse_votable(r.data)
    assert status == "OK" and list(out["id"]) == [1, 2] and out["ra"][0] == 10.5
    cases = [
        ({"UPLOAD": "c,param:missing"}, b"no multipart part"),
        ({"UPLOAD": "bad name,param:f"}, b"regular identifier"),
        ({"UPLOAD": "c,param:f;C,param:f"}, b"twice"),
        ({"UPLOAD": "c,ftp://example.org/x"}, b"not supported"),
        ({"UPLOAD": "c,http://127.0.0.1:9/x.vot"}, b"non-public address"),
        ({"UPLOAD": "c,http://10.1.2.3/x.vot"}, b"non-public address"),
    ]
    for extra, message in cases:
        r = c.post(
            "/tap/sync",
            data={"LANG": "ADQL", "QUERY": "SELECT * FROM TAP_UPLOAD.c", "f": (io.BytesIO(csv), "f.csv"), **extra},
            content_type="multipart/form-data",
        )
        assert r.status_code == 400 and message in r.data, (extra, r.data)
        assert parse_votable(r.data)[1] == "ERROR"
    # TAP_UPLOAD tables are not in TAP_SCHEMA and need their schema
    r = c.get("/tap/sync", query_string={"LANG": "ADQL", "QUERY": "SELECT * FROM TAP_UPLOAD.c"})
    assert r.status_code == 400 and b"TAP_UPLOAD.c does not exist" in r.data


def test_oversize_upload_refused_with_error_document(c):
    big = b"x,y\n" + b"1.0,2.0\n" * 100_000  # 800 kB > 200 kB limit
    r = c.post(
        "/tap/sync",
        data={
            "LANG": "ADQL",
            "QUERY": "SELECT * FROM TAP_UPLOAD.b",
            "UPLOAD": "b,param:f",
            "f": (io.BytesIO(big), "f.csv"),
        },
        content_type="multipart/form-data",
    )
    assert r.status_code in (400, 413)
    assert parse_votable(r.data)[1] == "ERROR" and b"limit" in r.data
    caps = c.get("/tap/capabilities").data
    assert b'<uploadLimit><default unit="byte">200000</default>' in caps
    assert b"#upload-inline" in caps and b"#upload-http" in caps


def test_http_upload_fetched_when_private_hosts_allowed(tmp_path):
    from conftest import demo_config
    from flask import Flask

    app = make_app(
        demo_config(tmp_path, uploads={"allow_private_hosts": True, "http_timeout": 2}), load_entrypoints=True
    )
    files = Flask("files")
    body = votable_bytes(Table({"k": [5, 6, 7]}), "binary")
    release = threading.Event()
    files.add_url_rule("/t.vot", "t", lambda: body)
    files.add_url_rule("/slow.vot", "slow", lambda: release.wait(10) and body)
    files.add_url_rule("/moved", "moved", lambda: ("", 302, {"Location": "/t.vot"}))
    c = app.test_client()
    with serve(files) as base:
        r = c.get(
            "/tap/sync",
            query_string={"LANG": "ADQL", "QUERY": "SELECT SUM(k) AS s FROM TAP_UPLOAD.h", "UPLOAD": f"h,{base}/t.vot"},
        )
        assert parse_votable(r.data)[0]["s"][0] == 18
        r = c.get(
            "/tap/sync",
            query_string={"LANG": "ADQL", "QUERY": "SELECT SUM(k) AS s FROM TAP_UPLOAD.h", "UPLOAD": f"h,{base}/moved"},
        )  # redirects are followed, each hop checked
        assert parse_votable(r.data)[0]["s"][0] == 18
        r = c.get(
            "/tap/sync",
            query_string={"LANG": "ADQL", "QUERY": "SELECT * FROM TAP_UPLOAD.h", "UPLOAD": f"h,{base}/slow.vot"},
        )
        release.set()
        # the read timeout and the deadline are both 2 s here: either may fire first
        assert r.status_code == 503 and (
            b"did not finish within its deadline of 2 s" in r.data or b"did not answer within 2.0 s" in r.data
        )
    app.extensions["vo_gateway"].jobs.close()


def test_async_uploads_accumulate_across_posts(c):
    import time

    a = votable_bytes(Table({"v": [1, 2]}), "tabledata")
    b = b"w\n10\n20\n30\n"
    r = c.post(
        "/tap/async", data={"UPLOAD": "a,param:pa", "pa": (io.BytesIO(a), "pa")}, content_type="multipart/form-data"
    )
    job = r.headers["Location"][len("http://localhost") :]
    c.post(
        job + "/parameters",
        data={"UPLOAD": "b,param:pb", "pb": (io.BytesIO(b), "pb")},
        content_type="multipart/form-data",
    )
    c.post(
        job, data={"LANG": "ADQL", "QUERY": "SELECT (SELECT SUM(v) FROM TAP_UPLOAD.a) + SUM(w) AS t FROM TAP_UPLOAD.b"}
    )
    params = c.get(job + "/parameters").data.decode()
    assert 'byReference="true"' in params and f"{job}/parameters/pa" in params
    assert c.get(job + "/parameters/pb").data == b
    c.post(job + "/phase", data={"PHASE": "RUN"})
    for _ in range(50):
        if c.get(job + "/phase").data in (b"COMPLETED", b"ERROR"):
            break
        time.sleep(0.1)
    out, status, _ = parse_votable(c.get(job + "/results/result").data)
    assert status == "OK" and out["t"][0] == 63


@pytest.mark.parametrize("fmt", ["binary", "binary2"])
def test_fixed_width_binary_read_with_numpy_equals_astropy(fmt):
    """An inline BINARY/BINARY2 table of fixed-width cells is decoded with numpy
    (gateway.binary2.read_fixed_binary); its columns and null cells equal astropy's parse of
    the same document, and documents it does not cover go to astropy."""
    from astropy.io.votable import from_table

    from gateway.binary2 import read_fixed_binary
    from gateway.uploads import _read_votable, votable_to_arrow

    rng = np.random.default_rng(5)
    n = 2000
    t = Table()
    t["tid"] = MaskedColumn(np.arange(n, dtype=np.int64), mask=rng.random(n) < 0.1)
    t["ra"] = rng.uniform(0, 360, n)
    t["ra"][::7] = np.nan
    t["dec"] = MaskedColumn(rng.uniform(-90, 90, n).astype(np.float32), mask=rng.random(n) < 0.1)
    t["n"] = MaskedColumn(rng.integers(-30000, 30000, n).astype(np.int16), mask=rng.random(n) < 0.1)
    t["k"] = MaskedColumn(rng.integers(-(2**31) + 1, 2**31, n).astype(np.int32), mask=rng.random(n) < 0.1)
    t["b"] = rng.integers(0, 256, n).astype(np.uint8)
    t["band"] = MaskedColumn(rng.choice(["g", "r", "i z", "y1234567"], n), mask=rng.random(n) < 0.1)
    t["when"] = ["2020-01-01T12:00:00"] * n
    t["name"] = rng.choice(["Orion Nébula", "M31", "ω Cen"], n)
    vot = from_table(t)
    for f in vot.get_first_table().fields:
        if f.datatype in ("short", "int", "long"):
            f.values.null = {"short": -32768, "int": -(2**31), "long": -(2**63)}[f.datatype]
        if f.name in ("band", "when", "name"):
            f.arraysize = {"band": "8", "when": "19", "name": "12"}[f.name]
        if f.name == "when":
            f.xtype = "timestamp"
        if f.name == "tid":
            f.ucd, f.unit, f.description = "meta.id", None, "target id"
    buf = io.BytesIO()
    vot.to_xml(buf, tabledata_format=fmt)
    data = buf.getvalue()
    assert read_fixed_binary(data) is not None  # the numpy path is the one taken
    cols, arrays = _read_votable("t", data)
    want_cols, want = votable_to_arrow(parse(io.BytesIO(data), verify="ignore").get_first_table(), "t")
    assert [vars(c) for c in cols] == [vars(c) for c in want_cols]
    for c_, got, ref in zip(cols, arrays, want):
        if fmt == "binary2" and c_.name == "band":  # astropy drops BINARY2's null flag of char cells
            assert got.is_null().to_pylist() == t["band"].mask.tolist()
            ref = pa.array([None if m else v for v, m in zip(ref.to_pylist(), t["band"].mask)], pa.string())
        assert got.equals(ref), c_.name
    assert cols[0].ucd == "meta.id" and cols[0].description == "target id"
    assert arrays[0].null_count > 100 and arrays[1].null_count >= n // 7  # nulls and NaN survive
    # not covered: TABLEDATA, a variable-length string, booleans and arrays (every_type_table)
    buf = io.BytesIO()
    vot.to_xml(buf, tabledata_format="tabledata")
    assert read_fixed_binary(buf.getvalue()) is None
    assert read_fixed_binary(data.replace(b'arraysize="8"', b'arraysize="8*"')) is None
    assert read_fixed_binary(votable_bytes(every_type_table(), fmt)) is None
