"""Kind ``ivoa`` (plugins/ivoa): an upstream TAP service fronted by the gateway.  The upstream
here is a real TAP service on loopback (a second gateway on the demo data) or a small emulator
for failures; the plugin's HTTP code is the production one (issue 6, generic IVOA upstream)."""

import json
import threading
import time

import pyarrow as pa
import pytest
import requests
from conftest import demo_config, needs_stilts
from flask import Flask, Response, request

from gateway.hookspecs import hookimpl
from gateway.testing import make_app, parse_votable, serve, taplint

ERROR_VOT = (
    b'<?xml version="1.0"?><VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
    b'<RESOURCE type="results"><INFO name="QUERY_STATUS" value="ERROR">Unknown column: bogus</INFO>'
    b"</RESOURCE></VOTABLE>"
)


class Recorder:
    def __init__(self):
        self.queries = []
        self.formats = []

    @hookimpl
    def gateway_query_started(self, actor, protocol, archive, query):
        self.queries.append(query)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    rec = Recorder()
    app = make_app(
        demo_config(tmp_path_factory.mktemp("up"), jobs={"heartbeat": 0.2}), plugins=[rec], load_entrypoints=True
    )

    @app.before_request
    def formats():  # what the plugin asked for
        rec.formats.append((request.path, request.values.get("RESPONSEFORMAT")))

    with serve(app) as base:
        yield base + "/tap", rec, app
    app.extensions["vo_gateway"].jobs.close()


@pytest.fixture(scope="module")
def front(upstream, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("front")
    app = make_app(
        {
            "archives": {
                "cadc": {
                    "kind": "ivoa",
                    "tap_url": upstream[0],
                    "schemas": {"demo": "up"},
                    "snapshot": str(tmp / "snapshot.json"),
                }
            },
            "jobs": {"store": f"sqlite:///{tmp}/jobs.sqlite", "results_dir": str(tmp / "r"), "heartbeat": 0.2},
        },
        load_entrypoints=True,
    )
    yield app, tmp
    app.extensions["vo_gateway"].jobs.close()


def run(client, q, **extra):
    r = client.get("/tap/sync", query_string={"LANG": "ADQL", "QUERY": q, **extra})
    return r, parse_votable(r.data)


QUERIES = [
    (
        "SELECT TOP 5 source_id, ra, dec, DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', 10, 10)) AS d "
        "FROM {s}.gaia_dr3_g10 WHERE 1=CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 10, 10, 2)) ORDER BY d"
    ),
    (
        "SELECT TOP 7 s.id, s.period, e.mjd, e.mag FROM {s}.s82_rrlyrae AS s JOIN {s}.s82_rrlyrae_epochs AS e "
        "ON e.id = s.id WHERE e.band = 'g' ORDER BY s.id, e.mjd"
    ),
    "SELECT COUNT(*) AS n, AVG(phot_g_mean_mag) AS g FROM {s}.gaia_dr3_g10 WHERE dec > 80",
]


@pytest.mark.parametrize("q", QUERIES)
def test_results_equal_the_upstream_answer(front, upstream, q):
    direct = make_client_for(upstream)
    r1, (t1, s1, _) = run(front[0].test_client(), q.format(s="up"))
    r2, (t2, s2, _) = run(direct, q.format(s="demo"))
    assert r1.status_code == 200 and s1 == s2 == "OK"
    assert t1.colnames == t2.colnames and len(t1) == len(t2) > 0
    for name in t1.colnames:
        assert list(t1[name]) == list(t2[name])
        assert t1[name].unit == t2[name].unit


def make_client_for(upstream):
    return upstream[2].test_client()


def test_maxrec_and_overflow_are_exact(front):
    c = front[0].test_client()
    _, (t, status, _) = run(c, "SELECT source_id FROM up.gaia_dr3_g10", MAXREC=4)
    assert len(t) == 4 and status == "OVERFLOW"
    _, (t, status, _) = run(c, "SELECT TOP 3 source_id FROM up.gaia_dr3_g10", MAXREC=10)
    assert len(t) == 3 and status == "OK"


@pytest.mark.parametrize(
    "q, qualifier",
    [
        ("SELECT TOP 2 ra, dec FROM up.gaia_dr3_g10 ORDER BY ra", "demo.gaia_dr3_g10.ra"),
        ("SELECT TOP 2 up.gaia_dr3_g10.ra FROM up.gaia_dr3_g10", "demo.gaia_dr3_g10.ra"),
        ("SELECT TOP 2 G.ra FROM up.gaia_dr3_g10 AS G WHERE g.dec > 0", "G.ra"),
        ("SELECT TOP 2 ra FROM UP.GAIA_DR3_G10", "demo.GAIA_DR3_G10.ra"),
        ('SELECT TOP 2 "Gx".ra FROM up.gaia_dr3_g10 AS "Gx"', '"Gx".ra'),
        ("SELECT TOP 2 s.ra FROM (SELECT ra FROM up.gaia_dr3_g10) AS s", "s.ra"),
    ],
)
def test_columns_are_qualified_as_from_exposes_them(front, upstream, q, qualifier):
    """Forwarded ADQL names each column's table the way FROM exposes it: the alias as
    written, or schema.table for an unaliased table; never a delimited form of a regular name
    ("gaia_dr3_g10".ra), which strict services such as DaCHS refuse (in SQL-92 the exposed name
    of an unaliased table is its table name, schema included)."""
    rec = upstream[1]
    r, (t, status, _) = run(front[0].test_client(), q)
    sent = rec.queries[-1]
    assert r.status_code == 200 and status == "OK" and len(t) == 2
    assert qualifier.replace(".ra", '."ra"') in sent and '"gaia_dr3_g10"' not in sent and '"G"' not in sent, sent


def test_names_are_rewritten_in_the_ast_not_the_text(front, upstream):
    rec = upstream[1]
    c = front[0].test_client()
    _, (t, _, _) = run(c, "SELECT TOP 1 'up.gaia_dr3_g10' AS label, up.gaia_dr3_g10.ra FROM up.gaia_dr3_g10")
    sent = rec.queries[-1]
    assert "demo.gaia_dr3_g10" in sent and "FROM up." not in sent
    assert t["label"][0] == "up.gaia_dr3_g10"  # the string literal was left alone


def test_metadata_imported_from_upstream(front, upstream):
    c, d = front[0].test_client(), make_client_for(upstream)
    q = (
        "SELECT column_name, datatype, unit, ucd, description FROM TAP_SCHEMA.columns "
        "WHERE table_name = '{t}' ORDER BY column_name"
    )
    _, (mine, _, _) = run(c, q.format(t="up.gaia_dr3_g10"))
    _, (theirs, _, _) = run(d, q.format(t="demo.gaia_dr3_g10"))
    assert len(mine) == len(theirs) == 6
    for name in mine.colnames:
        assert list(mine[name]) == list(theirs[name])
    _, (fk, _, _) = run(c, "SELECT from_table, target_table FROM TAP_SCHEMA.keys WHERE from_table LIKE 'up.%'")
    assert list(fk["target_table"]) == ["up.s82_rrlyrae"]
    snap = json.loads((front[1] / "snapshot.json").read_text())
    assert {t["name"] for t in snap} == {"sdss_stars", "gaia_dr3_g10", "s82_rrlyrae", "s82_rrlyrae_epochs"}


def test_async_maps_onto_upstream_async_and_abort_reaches_it(front, upstream):
    c = front[0].test_client()
    up_jobs = make_client_for(upstream)
    r = c.post(
        "/tap/async", data={"LANG": "ADQL", "PHASE": "RUN", "QUERY": "SELECT TOP 3 id FROM up.s82_rrlyrae ORDER BY id"}
    )
    job = r.headers["Location"][len("http://localhost") :]
    for _ in range(100):
        if c.get(job + "/phase").data in (b"COMPLETED", b"ERROR"):
            break
        time.sleep(0.1)
    t, status, _ = parse_votable(c.get(job + "/results/result").data)
    assert status == "OK" and len(t) == 3
    assert b"<uws:jobref" not in up_jobs.get("/tap/async").data  # the upstream job was deleted after use
    slow = (
        "SELECT COUNT(*) AS n FROM up.gaia_dr3_g10 AS a, up.gaia_dr3_g10 AS b "
        "WHERE a.phot_g_mean_mag + b.phot_g_mean_mag < -1"
    )
    job = c.post("/tap/async", data={"LANG": "ADQL", "PHASE": "RUN", "QUERY": slow}).headers["Location"][
        len("http://localhost") :
    ]
    t0 = time.monotonic()
    while b"EXECUTING" not in up_jobs.get("/tap/async?PHASE=EXECUTING").data:
        assert time.monotonic() - t0 < 10
        time.sleep(0.05)
    c.post(job + "/phase", data={"PHASE": "ABORT"})
    t0 = time.monotonic()
    while b"<uws:jobref" in up_jobs.get("/tap/async?PHASE=EXECUTING").data:
        assert time.monotonic() - t0 < 10, "upstream job still running"
        time.sleep(0.05)


@pytest.fixture
def broken(front, tmp_path):
    """A second front on an emulated upstream that fails in chosen ways; it starts from the
    snapshot because the emulator has no /tables."""
    mode = {"now": "error"}
    emu = Flask("emu")
    release = threading.Event()

    @emu.route("/tap/sync", methods=["POST"])
    def sync():
        if mode["now"] == "error":
            return Response(ERROR_VOT, 400, mimetype="application/x-votable+xml")
        if mode["now"] == "500":
            return Response("database on fire", 500, mimetype="text/plain")
        if mode["now"] == "garbage":
            return Response(b"<html>not a votable", 200, mimetype="text/html")
        if mode["now"] == "elsewhere":
            return Response("", 303, {"Location": "http://169.254.169.254/latest/meta-data"})
        release.wait(10)
        return Response(ERROR_VOT, 200, mimetype="application/x-votable+xml")

    with serve(emu) as base:
        app = make_app(
            {
                "archives": {
                    "cadc": {
                        "kind": "ivoa",
                        "tap_url": base + "/tap",
                        "schemas": {"demo": "up"},
                        "snapshot": str(front[1] / "snapshot.json"),
                        "timeout": 1,
                    }
                },
                "jobs": {"store": f"sqlite:///{tmp_path}/j.sqlite", "results_dir": str(tmp_path / "r")},
            },
            load_entrypoints=True,
        )
        yield app.test_client(), mode
        release.set()
        app.extensions["vo_gateway"].jobs.close()


def test_upstream_failures_are_reported_as_such(broken):
    c, mode = broken
    q = {"LANG": "ADQL", "QUERY": "SELECT TOP 1 id FROM up.s82_rrlyrae"}
    expected = {
        "error": (400, b"said: Unknown column: bogus"),
        "500": (503, b"database on fire"),
        "garbage": (503, b"no readable VOTable"),
        "elsewhere": (503, b"another address (http://169.254.169.254:80 is not a configured upstream)"),
        "slow": (503, b"did not answer within 1.0 s"),
    }
    for m, (status, text) in expected.items():
        mode["now"] = m
        r = c.get("/tap/sync", query_string=q)
        assert r.status_code == status and text in r.data, (m, r.data)
        assert parse_votable(r.data)[1] == "ERROR"
        if status == 503:  # an upstream failure names the archive it came from
            assert b"archive cadc: " in r.data, r.data
    assert b"cadc: upstream" in c.get("/tap/availability").data


def test_refuses_to_start_without_upstream_or_snapshot(tmp_path):
    from gateway.config import ConfigError

    with pytest.raises(ConfigError, match="unreachable .* no metadata snapshot"):
        make_app(
            {
                "archives": {"x": {"kind": "ivoa", "tap_url": "http://127.0.0.1:9/tap", "schemas": {"a": "b"}}},
                "jobs": {"store": f"sqlite:///{tmp_path}/j.sqlite", "results_dir": str(tmp_path / "r")},
            },
            load_entrypoints=True,
        )


@needs_stilts
def test_taplint_over_the_fronted_service(front):
    with serve(front[0]) as base:
        bad, _ = taplint(f"{base}/tap", "TMV TME TMS TMC CAP QGE QPO MDQ", "tables=up.*", "maxtable=4")
    assert bad == []


def test_upstream_cone_search_offered_at_scs(upstream, tmp_path):
    """An upstream SCS (here the demo gateway's) fronted as a cone-only table: not in TAP_SCHEMA."""
    import pyvo

    base = upstream[0][: -len("/tap")]
    app = make_app(
        {
            "archives": {
                "gaia": {
                    "kind": "ivoa",
                    "cone_services": [
                        {
                            "table": "bright.gaia_cone",
                            "url": base + "/scs/demo.gaia_dr3_g10",
                            "description": "Gaia G<10 cone",
                        }
                    ],
                    "snapshot": str(tmp_path / "snap.json"),
                }
            },
            "jobs": {"store": f"sqlite:///{tmp_path}/j.sqlite", "results_dir": str(tmp_path / "r")},
        },
        load_entrypoints=True,
    )
    try:
        with serve(app) as url:
            res = pyvo.dal.SCSService(url + "/scs/bright.gaia_cone").search(pos=(10, 10), radius=1.0, verbosity=3)
            direct = pyvo.dal.SCSService(base + "/scs/demo.gaia_dr3_g10").search(pos=(10, 10), radius=1.0, verbosity=3)
            assert sorted(res.to_table()["source_id"]) == sorted(direct.to_table()["source_id"]) and len(res) > 3
            fields = {f.name: f.ucd for f in res.votable.get_first_table().fields}
            assert fields["source_id"] == "ID_MAIN" and fields["ra"] == "POS_EQ_RA_MAIN"
            tables = pyvo.dal.TAPService(url + "/tap").run_sync("SELECT table_name FROM TAP_SCHEMA.tables").to_table()
            assert "bright.gaia_cone" not in list(tables["table_name"])
            r = requests.get(url + "/scs/bright.gaia_cone", params={"RA": 10, "DEC": 10, "SR": 100})
            assert b"SR" in r.content
        assert (tmp_path / "snap.cones.json").exists()
    finally:
        app.extensions["vo_gateway"].jobs.close()


def test_large_plain_selections_stream_as_csv(front, upstream):
    rec = upstream[1]
    c = front[0].test_client()
    q = "SELECT source_id, ra, dec, phot_g_mean_mag FROM {s}.gaia_dr3_g10 WHERE dec > 70"  # 12,536 rows
    r1, (t1, s1, _) = run(c, q.format(s="up"), MAXREC=200000, RESPONSEFORMAT="votable/td")
    assert rec.formats[-1] == ("/tap/sync", "csv")
    _, (t2, _, _) = run(make_client_for(upstream), q.format(s="demo"), MAXREC=200000)
    assert s1 == "OK" and len(t1) == len(t2) > 10000
    assert list(t1["source_id"]) == list(t2["source_id"]) and list(t1["ra"]) == list(t2["ra"])
    assert t1["phot_g_mean_mag"].dtype == t2["phot_g_mean_mag"].dtype
    _, (t3, s3, _) = run(c, q.format(s="up"), MAXREC=1000, RESPONSEFORMAT="votable/td")
    assert len(t3) == 1000 and s3 == "OVERFLOW"
    run(c, "SELECT TOP 2 source_id, ra * 2 AS ra2 FROM up.gaia_dr3_g10")  # an expression: VOTable
    assert rec.formats[-1] == ("/tap/sync", None)


def test_csv_answers_pass_through_unchanged(front, upstream):
    """A CSV request over a CSV upstream answer is passed on as the upstream wrote it (no
    second encoding): byte-equal to asking the upstream directly; MAXREC cuts whole records,
    also when quoted fields hold line ends, and flags the overflow; the row count reaches the
    finished hook."""
    import requests as rq

    from gateway.adql.validate import OutputColumn
    from gateway.schema import Column
    from gateway.tapclient import ForwardPlan

    c = front[0].test_client()
    q = "SELECT source_id, ra, dec, phot_g_mean_mag FROM {s}.gaia_dr3_g10 WHERE dec > 60"
    r1 = c.get(
        "/tap/sync", query_string={"LANG": "ADQL", "QUERY": q.format(s="up"), "RESPONSEFORMAT": "csv", "MAXREC": 100000}
    )
    r2 = make_client_for(upstream).get(
        "/tap/sync",
        query_string={"LANG": "ADQL", "QUERY": q.format(s="demo"), "RESPONSEFORMAT": "csv", "MAXREC": 100000},
    )
    assert r1.status_code == 200 and r1.data == r2.data and r1.data.count(b"\n") > 1000
    r3 = c.get(
        "/tap/sync", query_string={"LANG": "ADQL", "QUERY": q.format(s="up"), "RESPONSEFORMAT": "csv", "MAXREC": 7}
    )
    assert r3.data.splitlines() == r2.data.splitlines()[:8]
    archive = front[0].extensions["vo_gateway"].catalogue.archives["cadc"]
    outputs = [OutputColumn("a", Column("a", "int")), OutputColumn("b", Column("b", "char", "*"))]
    body = b'a,b\r\n1,"x\ny"\n2,"q""\n,"\n3,z\n'
    for maxrec, expect, overflow in (
        (2, b'1,"x\ny"\n2,"q""\n,"\n', True),
        (3, body[5:], False),
        (None, body[5:], False),
    ):
        resp = rq.models.Response()
        resp._content, resp.status_code, resp._content_consumed = body, 200, True
        stream = archive._csv_stream(resp, ForwardPlan("", outputs), {"a": None, "b": None}, maxrec)
        assert b"".join(stream.encoded["csv"]()) == expect and stream.overflow is overflow
        assert stream.rows_passed == (maxrec or 3)
        resp._content = body
        stream = archive._csv_stream(resp, ForwardPlan("", outputs), {"a": pa.int32(), "b": pa.string()}, maxrec)
        rows = pa.Table.from_batches(list(stream))
        assert rows["b"].to_pylist() == ["x\ny", 'q"\n,', "z"][: maxrec or 3] and stream.overflow is overflow


def _stream_text(body: bytes) -> bytes:
    return body.split(b'<STREAM encoding="base64">\n', 1)[1].split(b"</STREAM>", 1)[0]


def test_binary2_answers_pass_through(front, upstream):
    """A BINARY2 request (the default VOTable) over an upstream that offers BINARY2 in its
    capabilities asks for BINARY2 and copies the rows through: the STREAM is byte-equal to the
    upstream's own; MAXREC cuts whole rows with OVERFLOW; the row count reaches the hook; a
    TABLEDATA request, an expression column or a char(*) column take the other paths."""
    from gateway.hookspecs import hookimpl

    rec = upstream[1]
    c = front[0].test_client()
    q = "SELECT source_id, ra, dec, phot_g_mean_mag FROM {s}.gaia_dr3_g10 WHERE dec > 70"  # 12,536 rows
    r1, (t1, s1, _) = run(c, q.format(s="up"), MAXREC=200000)
    assert rec.formats[-1] == ("/tap/sync", "application/x-votable+xml")
    r2, (t2, _, _) = run(make_client_for(upstream), q.format(s="demo"), MAXREC=200000)
    assert s1 == "OK" and len(t1) == len(t2) > 10000
    assert _stream_text(r1.data).replace(b"\n", b"") == _stream_text(r2.data).replace(b"\n", b"")
    for name in t1.colnames:
        assert t1[name].dtype == t2[name].dtype and (t1[name] == t2[name]).all()
    n = len(t2)
    for maxrec, status in ((1000, "OVERFLOW"), (n, "OK"), (n - 1, "OVERFLOW"), (1, "OVERFLOW")):
        _, (t, st, _) = run(c, q.format(s="up"), MAXREC=maxrec)
        assert len(t) == min(maxrec, n) and st == status, (maxrec, st)
        assert list(t["source_id"]) == list(t2["source_id"][:maxrec])

    class Rows:
        seen = []

        @hookimpl
        def gateway_query_finished(self, actor, protocol, archive, query, rows, overflow, error):
            self.seen.append((rows, overflow))

    pm, hook = front[0].extensions["vo_gateway"].pm, Rows()
    pm.register(hook)
    try:
        run(c, q.format(s="up"), MAXREC=1234)
        assert Rows.seen[-1] == (1234, True)
    finally:
        pm.unregister(hook)
    run(c, "SELECT TOP 3 s.id, s.ra FROM up.s82_rrlyrae AS s ORDER BY s.id")
    assert rec.formats[-1] == ("/tap/sync", "application/x-votable+xml")
    _, (t, st, _) = run(c, "SELECT TOP 3 e.band, e.mjd FROM up.s82_rrlyrae_epochs AS e ORDER BY e.mjd")
    assert rec.formats[-1] == ("/tap/sync", "csv") and st == "OK" and len(t) == 3  # band is char(*)
    run(c, "SELECT TOP 2 source_id, ra * 2 AS ra2 FROM up.gaia_dr3_g10")
    assert rec.formats[-1] == ("/tap/sync", None)


def _upstream_answer(columns, batches, overflow=False, error=None, serialization="binary2") -> bytes:
    """A BINARY2 answer as the gateway's own writer produces it (the upstream's bytes)."""
    from gateway.formats.votable import write_votable
    from gateway.rowstream import RowStream

    def gen():
        yield from batches
        if error:
            from gateway.faults import UsageFault

            raise UsageFault(error)

    stream = RowStream(columns, gen(), overflow=overflow)
    return b"".join(write_votable(stream, [], serialization))


def test_binary2_reader_cuts_counts_and_reports_the_trailer():
    """Binary2Answer on chunk boundaries of every size: rows cut at MAXREC exactly, the
    upstream's own OVERFLOW and in-band ERROR carried over, a layout that is not the declared
    one or not BINARY2 falls back to the whole body, a broken-off stream is an error."""
    import base64

    import numpy as np

    from gateway.binary2 import Binary2Answer, row_width
    from gateway.faults import Fault
    from gateway.schema import Column

    cols = [Column("id", "long"), Column("flux", "float"), Column("band", "char", "2"), Column("pos", "double", "2")]
    n = 3000
    rng = np.random.default_rng(1)
    flux = pa.array(rng.random(n).astype("float32"), mask=rng.random(n) < 0.1)
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array(np.arange(n, dtype="int64")),
            flux,
            pa.array(["gr"] * n),
            pa.FixedSizeListArray.from_arrays(pa.array(rng.random(2 * n)), 2),
        ],
        names=[c.name for c in cols],
    )
    assert row_width(cols) == 1 + 8 + 4 + 2 + 16
    assert row_width([Column("s", "char", "*")]) is None and row_width([None]) is None

    def chunks(body, size):
        return iter([body[i : i + size] for i in range(0, len(body), size)])

    def read(body, maxrec, size=997):
        flags = {"overflow": False, "rows": None}
        a = Binary2Answer(chunks(body, size), cols, "upstream X")
        assert a.ok
        text = b"".join(a.rows(maxrec, lambda: flags.update(overflow=True), lambda k: flags.update(rows=k)))
        return base64.b64decode(text), flags

    plain = _upstream_answer(cols, [batch.slice(0, 1000), batch.slice(1000)])
    whole, _ = read(plain, None)
    assert len(whole) == n * 31
    for size in (1, 7, 76, 4096):
        for maxrec in (None, n, n - 1, 1, 0):
            data, flags = read(plain, maxrec, size)
            k = n if maxrec is None else min(maxrec, n)
            assert data == whole[: k * 31] and flags["rows"] == k
            assert flags["overflow"] is (maxrec is not None and maxrec < n), (size, maxrec)
    _, flags = read(_upstream_answer(cols, [batch], overflow=True), None)
    assert flags == {"overflow": True, "rows": n}
    with pytest.raises(Fault, match="upstream X said: the upstream fell over"):
        read(_upstream_answer(cols, [batch], error="the upstream fell over"), None)
    with pytest.raises(Fault, match="broke off"):
        read(plain[: len(plain) // 2], None)
    other = [Column("id", "long"), Column("flux", "double"), cols[2], cols[3]]
    td = _upstream_answer(cols, [batch], serialization="tabledata")
    for body, declared in ((plain, other), (td, cols)):
        a = Binary2Answer(chunks(body, 100), declared, "upstream X")
        assert not a.ok and a.whole() == body


def test_result_cache_reuses_identical_queries_per_caller(upstream, tmp_path):
    """With the result cache on, an identical query of the same caller is answered without
    the upstream, byte-equal, in every format; another MAXREC, another format or another
    caller (HTTP Basic: another owner key) asks the upstream again; no password reaches the
    cache directory; a failed or over-size result is not kept."""
    import base64

    from gateway.cache import ResultCache
    from gateway.config import CacheConfig
    from gateway.faults import FatalFault
    from gateway.rowstream import RowStream
    from gateway.schema import Column

    rec = upstream[1]
    app = make_app(
        {
            "archives": {"cadc": {"kind": "ivoa", "tap_url": upstream[0], "schemas": {"demo": "up"}}},
            "jobs": {"store": f"sqlite:///{tmp_path}/jobs.sqlite", "results_dir": str(tmp_path / "r")},
            "cache": {"ttl": 600, "dir": str(tmp_path / "cache")},
        },
        load_entrypoints=True,
    )
    c = app.test_client()
    q = "SELECT source_id, ra, phot_g_mean_mag FROM up.gaia_dr3_g10 WHERE dec > 70"

    def ask(fmt=None, user=None, **extra):
        headers = (
            {"Authorization": "Basic " + base64.b64encode(f"{user}:pw-{user}-secret".encode()).decode()} if user else {}
        )
        before = len(rec.queries)
        r = c.get(
            "/tap/sync",
            headers=headers,
            query_string={
                "LANG": "ADQL",
                "QUERY": q,
                "MAXREC": 5000,
                **({"RESPONSEFORMAT": fmt} if fmt else {}),
                **extra,
            },
        )
        assert r.status_code == 200
        return r.data, len(rec.queries) - before

    try:
        for fmt in (None, "csv", "votable/td", "fits"):
            first, went = ask(fmt)
            again, went_again = ask(fmt)
            assert went == 1 and went_again == 0 and again == first, fmt
        assert ask(MAXREC=10)[1] == 1
        alice, went = ask(user="alice")
        assert went == 1 and ask(user="alice") == (alice, 0)
        assert ask(user="bob")[1] == 1  # the same query, another caller: not shared
        for f in (tmp_path / "cache").rglob("*"):
            if f.is_file():
                assert b"pw-alice-secret" not in f.read_bytes() and b"alice" not in f.read_bytes()
    finally:
        app.extensions["vo_gateway"].jobs.close()
    cache = ResultCache(CacheConfig(dir=tmp_path / "c2", max_entry_bytes=100), tmp_path)
    cols = [Column("x", "long")]

    def failing():
        yield pa.record_batch([pa.array([1, 2])], names=["x"])
        raise FatalFault("upstream broke off")

    with pytest.raises(FatalFault):
        list(cache.tee("k1", RowStream(cols, failing())))
    list(cache.tee("k2", RowStream(cols, [pa.record_batch([pa.array(range(1000))], names=["x"])])))
    list(cache.tee("k3", RowStream(cols, [pa.record_batch([pa.array([7])], names=["x"])], overflow=True)))
    assert cache.get("k1") is None and cache.get("k2") is None
    hit = cache.get("k3")
    assert [b.column(0).to_pylist() for b in hit] == [[7]] and hit.overflow
    cache.close()


def test_upstream_session_reads_proxies_once_per_origin(monkeypatch):
    """The environment's proxy settings still apply (read when the session is made, per
    origin, honouring NO_PROXY); ~/.netrc and per-request environment lookups do not."""
    from gateway.upstream import UpstreamSession

    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "near.example")
    s = UpstreamSession({"http://far.example:80", "http://near.example:80"}, 5)
    assert s.trust_env is False
    assert s.origin_proxies["http://far.example:80"].get("http") == "http://proxy.example:3128"
    assert not s.origin_proxies["http://near.example:80"].get("http")
