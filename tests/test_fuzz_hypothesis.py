"""Property-based fuzzing with hypothesis (issue 21): DuckDB escape attempts in ADQL, hostile
DALI/UWS parameters and encodings, broken multipart bodies, and malformed uploads including XML
entity expansion and external entities.

Every case asserts five things:
- no HTTP 5xx;
- no stack trace in the body;
- no byte of the canary, which is a file on disk and an environment variable every escape aims
  at;
- an answer within the deadline;
- for 4xx, a DALI error document (or SODA's text error).

The bounded profile runs in the suite. ``VO_GATEWAY_FUZZ_EXAMPLES=5000 python -m pytest
tests/test_fuzz_hypothesis.py`` runs a long one.
"""

from __future__ import annotations

import io
import os
import secrets
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

EXAMPLES = int(os.environ.get("VO_GATEWAY_FUZZ_EXAMPLES", "200"))
DEADLINE = 15.0  # seconds for one answer, read whole
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)

CANARY = "VOCANARY" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    """A file and an environment variable holding the canary; yields the file's path."""
    d = tmp_path_factory.mktemp("canary")
    path = d / "secret.csv"
    path.write_text(f"secret\n{CANARY}\n")
    (d / "secret.json").write_text(f'{{"secret": "{CANARY}"}}')
    os.environ["VO_GATEWAY_CANARY"] = CANARY
    yield str(path)
    os.environ.pop("VO_GATEWAY_CANARY", None)


def escapes(path: str) -> list[str]:
    """DuckDB's ways to reach files, settings, the environment and extensions."""
    return [
        f"read_csv('{path}')",
        f"read_csv_auto('{path}')",
        f"read_json('{path[:-3]}json')",
        f"read_text('{path}')",
        f"read_blob('{path}')",
        f"read_parquet('{path}')",
        f"'{path}'",
        f'"{path}"',
        f"glob('{os.path.dirname(path)}/*')",
        "getenv('VO_GATEWAY_CANARY')",
        "current_setting('home_directory')",
        "duckdb_settings()",
        "duckdb_tables()",
        "duckdb_extensions()",
        "pragma_database_list",
        "sniff_csv('" + path + "')",
        f"query_table('{path}')",
        f"query('SELECT * FROM read_csv(''{path}'')')",
        '"read_csv"(\'' + path + "')",
        "demo.\"'" + path + "'\"",
        "TAP_UPLOAD.\"x; ATTACH '/tmp/x.db'\"",
    ]


STATEMENTS = [
    "COPY demo.sdss_stars TO '/tmp/vo-fuzz-out.csv'",
    "ATTACH '/tmp/vo-fuzz.db' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "PRAGMA database_list",
    "SET enable_external_access = true",
    "CREATE TABLE x AS SELECT 1",
    "EXPORT DATABASE '/tmp/vo-fuzz'",
    "CALL pragma_version()",
]

CONTEXTS = [
    "SELECT * FROM {e}",
    "SELECT TOP 3 {e} AS x FROM demo.sdss_stars",
    "SELECT TOP 3 ra FROM demo.sdss_stars WHERE ra IN (SELECT * FROM {e})",
    "SELECT TOP 3 s.ra FROM demo.sdss_stars AS s JOIN {e} AS f ON 1 = 1",
    "SELECT ra FROM demo.sdss_stars UNION SELECT * FROM {e}",
    "WITH w AS (SELECT * FROM {e}) SELECT * FROM w",
    "SELECT TOP 1 ra FROM demo.sdss_stars; {e}",
    "SELECT TOP 1 ra FROM demo.sdss_stars WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), {e})",
    "SELECT TOP 1 CAST({e} AS VARCHAR(10)) AS x FROM demo.sdss_stars",
    "SELECT TOP 1 ra FROM demo.sdss_stars ORDER BY {e}",
]

NOISE = st.lists(
    st.sampled_from(list("()'\";,.*-+/%\\\x00\t\n") + ["--", "/*", "*/", "\u00e9", "\u202e", " "]), max_size=12
).map("".join)


def check(r, started: float) -> None:
    body = r.get_data()
    took = time.monotonic() - started
    assert r.status_code < 500, (r.status_code, body[-400:])
    assert took < DEADLINE, f"{took:.1f} s"
    text = body.decode("utf-8", "replace")
    assert CANARY not in text, "the canary leaked"
    assert "Traceback" not in text and 'File "/' not in text, text[-400:]
    if 400 <= r.status_code < 500 and r.mimetype != "text/plain":
        assert 'QUERY_STATUS" value="ERROR"' in text or '<INFO name="Error"' in text, text[-300:]


@FUZZ
@given(data=st.data())
def test_adql_duckdb_escapes(client, canary, data):
    e = data.draw(st.sampled_from(escapes(canary) + STATEMENTS), label="escape")
    ctx = data.draw(st.sampled_from(CONTEXTS), label="context")
    noise = data.draw(NOISE, label="noise")
    where = data.draw(st.sampled_from(["before", "after", "none"]), label="where")
    query = ctx.format(e=e)
    query = noise + query if where == "before" else query + noise if where == "after" else query
    fmt = data.draw(st.sampled_from(["votable", "csv", "json", "html"]))
    t0 = time.monotonic()
    check(client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": query, "RESPONSEFORMAT": fmt}), t0)


ENDPOINTS = [
    ("/tap/sync", ["LANG", "QUERY", "MAXREC", "RESPONSEFORMAT", "FORMAT", "UPLOAD", "REQUEST"]),
    ("/tap/async", ["LANG", "QUERY", "MAXREC", "EXECUTIONDURATION", "DESTRUCTION", "PHASE", "UPLOAD", "RUNID"]),
    ("/scs/demo.sdss_stars", ["RA", "DEC", "SR", "VERB", "MAXREC", "RESPONSEFORMAT"]),
    ("/sia/query", ["POS", "BAND", "TIME", "COLLECTION", "MAXREC", "RESPONSEFORMAT", "CALIB"]),
    ("/sia1", ["POS", "SIZE", "FORMAT", "INTERSECT"]),
    ("/soda/sync", ["ID", "CIRCLE", "POS", "POLYGON", "RESPONSEFORMAT"]),
    ("/datalink/links", ["ID", "RESPONSEFORMAT"]),
]
VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "nan", "1e999", "-1", "CIRCLE 1 2 3", "ivo://vo-gateway/demo?frame-r-004510-4-0030", "RUN"]),
    st.builds(lambda n: "A" * n, st.integers(10_000, 300_000)),
    st.builds(lambda s: s + "\x00" + s, st.text(max_size=5)),
)


@FUZZ
@given(data=st.data())
def test_dali_parameters(client, data):
    """Hostile values, repeated names, huge values and both methods on every endpoint."""
    path, names = data.draw(st.sampled_from(ENDPOINTS), label="endpoint")
    chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=6), label="names")
    pairs = [(n if data.draw(st.booleans()) else n.lower(), data.draw(VALUES)) for n in chosen]
    t0 = time.monotonic()
    if data.draw(st.booleans(), label="post"):
        r = client.post(path, data=MultiDict(pairs))
    else:
        r = client.get(path, query_string=MultiDict(pairs))
    check(r, t0)
    if r.status_code == 303 and "/tap/async/" in r.headers.get("Location", ""):
        client.post(r.headers["Location"], data={"ACTION": "DELETE"})


@FUZZ
@given(raw=st.binary(max_size=200), path=st.sampled_from([e[0] for e in ENDPOINTS]))
def test_badly_encoded_query_strings(client, raw, path):
    """Raw bytes as the query string: invalid percent-encoding and invalid UTF-8 included."""
    qs = raw.replace(b" ", b"+").replace(b"#", b"%23")
    t0 = time.monotonic()
    check(client.get(path, environ_overrides={"QUERY_STRING": qs.decode("latin-1")}), t0)


@FUZZ
@given(body=st.binary(max_size=2000), boundary=st.text(alphabet="abc-_0123", min_size=0, max_size=30))
def test_broken_multipart(client, body, boundary):
    t0 = time.monotonic()
    r = client.post(
        "/tap/sync",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}" if boundary else "multipart/form-data",
    )
    check(r, t0)


VOTABLE = b"""<?xml version="1.0"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>
<FIELD name="ra" datatype="double"/><FIELD name="dec" datatype="double"/>
<DATA><TABLEDATA><TR><TD>10.0</TD><TD>20.0</TD></TR><TR><TD>11.5</TD><TD>-3.25</TD></TR></TABLEDATA></DATA>
</TABLE></RESOURCE></VOTABLE>
"""


def hostile_uploads(path: str) -> list[bytes]:
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    return [
        b'<?xml version="1.0"?><!DOCTYPE v [<!ENTITY l0 "lol">' + lol.encode() + b"]>"
        b'<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE><FIELD name="a" datatype="char" '
        b'arraysize="*"/><DATA><TABLEDATA><TR><TD>&l9;</TD></TR></TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>',
        f'<?xml version="1.0"?><!DOCTYPE v [<!ENTITY x SYSTEM "file://{path}">]>'.encode()
        + b'<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE><FIELD name="a" datatype="char" '
        b'arraysize="*"/><DATA><TABLEDATA><TR><TD>&x;</TD></TR></TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>',
        f'<?xml version="1.0"?><!DOCTYPE v SYSTEM "file://{path}"><VOTABLE/>'.encode(),
        f'<?xml version="1.0"?><?xml-stylesheet href="file://{path}"?>'.encode() + VOTABLE[21:],
        b"ra,dec\n1,2\n3",
        b"\x00\x01\x02SIMPLE  =                    T",
        b"",
    ]


@FUZZ
@given(data=st.data())
def test_malformed_uploads(client, canary, data):
    """Truncated and bit-flipped VOTables, broken CSV, billion-laughs entity expansion and
    external entities naming the canary file, as TAP_UPLOAD tables."""
    kind = data.draw(st.sampled_from(["mutated", "hostile"]), label="kind")
    if kind == "hostile":
        body = data.draw(st.sampled_from(hostile_uploads(canary)))
    else:
        cut = data.draw(st.integers(0, len(VOTABLE)))
        flips = data.draw(st.lists(st.tuples(st.integers(0, len(VOTABLE) - 1), st.integers(0, 255)), max_size=4))
        b = bytearray(VOTABLE[:cut] if data.draw(st.booleans()) else VOTABLE)
        for i, v in flips:
            if i < len(b):
                b[i] = v
        body = bytes(b)
    name = data.draw(st.sampled_from(["t.xml", "t.csv", "t.fits", "t"]))
    t0 = time.monotonic()
    r = client.post(
        "/tap/sync",
        data={
            "LANG": "ADQL",
            "QUERY": "SELECT * FROM TAP_UPLOAD.t",
            "UPLOAD": "t,param:t",
            "t": (io.BytesIO(body), name),
        },
        content_type="multipart/form-data",
    )
    check(r, t0)
