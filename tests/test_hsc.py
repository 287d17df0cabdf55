"""Kind ``hsc`` (plugins/hsc) against the catalog-job API emulation (issue 4): ADQL cone on
``forced`` with a photo-z join through pyvo, sync and async, with the user's own HSC account."""
import numpy as np
import pytest
import requests

from emulators.hsc import hsc_app
from gateway.obscore import separation
from gateway.testing import make_app, parse_votable, serve

Q = ("SELECT f.object_id, f.ra, f.dec, f.i_cmodel_mag, p.photoz_best FROM hsc_s23b_wide.forced AS f "
     "JOIN hsc_s23b_wide.photoz_mizuki AS p ON f.object_id = p.object_id "
     "WHERE 1 = CONTAINS(POINT('ICRS', f.ra, f.dec), CIRCLE('ICRS', 150.0, 2.0, 120/3600.0)) ORDER BY f.object_id")


@pytest.fixture(scope="module")
def emu():
    app = hsc_app(users={"alice": "a-pw", "bob": "b-pw"})
    with serve(app) as base:
        yield app, base


@pytest.fixture(scope="module")
def gw(emu, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hsc")
    app = make_app({"archives": {"hsc": {"kind": "hsc", "api_url": emu[1] + "/datasearch/api/catalog_jobs/",
                                         "release_version": "dr4", "schemas": {"s23b_wide": "hsc_s23b_wide"},
                                         "poll_initial": 0.01, "sync_wait": 3}},
                    "jobs": {"store": f"sqlite:///{tmp}/j.sqlite", "results_dir": str(tmp / "r"), "heartbeat": 0.2}},
                   load_entrypoints=True)
    with serve(app) as url:
        yield app, url
    app.extensions["vo_gateway"].jobs.close()


def truth(emu_app):
    f = emu_app.forced
    d = separation(f["ra"].to_numpy(), f["dec"].to_numpy(), 150.0, 2.0)
    return sorted(np.array(f["object_id"])[d <= 120 / 3600].tolist())


def tap(url, who):
    import pyvo
    s = requests.Session()
    s.auth = who
    return pyvo.dal.TAPService(url + "/tap", session=s)


def test_cone_with_photoz_join_sync_and_async(gw, emu):
    app, _ = emu
    service = tap(gw[1], ("alice", "a-pw"))
    expected = truth(app)
    for run in (service.run_sync, service.run_async):
        t = run(Q).to_table()
        assert list(t["object_id"]) == expected and len(expected) > 20
        assert t["object_id"].dtype == np.int64 and t["object_id"][0] >> 42 == 9813  # 64-bit ids exact
        assert t["photoz_best"].dtype == np.float32
    submits = [b for verb, b in app.requests if verb == "submit"]
    body = submits[-1]
    assert body["credential"] == {"account_name": "alice", "password": "a-pw"}
    assert isinstance(body["clientVersion"], float) and body["nomail"] is True
    job = body["catalog_job"]
    assert job["release_version"] == "dr4" and job["out_format"] == "csv" and job["include_metainfo_to_body"] is True
    assert "coneSearch(f.coord, 150.0, 2.0, 120)" in job["sql"] and "s23b_wide.photoz_mizuki" in job["sql"]
    verbs = [v for v, b in app.requests if b.get("id") == app.requests[-1][1].get("id")]
    assert verbs[-2:] == ["download", "delete"] and "status" in verbs


def test_credentials_are_the_users_own(gw, emu):
    url = gw[1]
    q = {"LANG": "ADQL", "QUERY": Q}
    r = requests.get(url + "/tap/sync", params=q)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    assert parse_votable(r.content)[1] == "ERROR"
    r = requests.get(url + "/tap/sync", params=q, auth=("alice", "wrong"))
    assert r.status_code == 401 and b"invalid HSC account or password" in r.content and b"wrong" not in r.content
    r = requests.get(url + "/tap/sync", params=q, auth=("bob", "b-pw"))
    assert r.status_code == 200
    assert emu[0].requests[-1][1]["credential"]["account_name"] == "bob"


def test_hsc_sql_errors_and_slow_jobs(gw, emu):
    app, _ = emu
    url = gw[1]
    r = requests.get(url + "/tap/sync", auth=("alice", "a-pw"), params={"LANG": "ADQL", "QUERY":
                     "SELECT TOP 3 object_id, a_g FROM hsc_s23b_wide.forced WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
                     "CIRCLE('ICRS', 150, 2, 0.01))"})  # a_g is in the PDR2 schema but not in the emulated table
    assert r.status_code == 400 and b"HSC-SSP refused the query: SQL error" in r.content
    app.polls_to_done = 10_000
    try:
        r = requests.get(url + "/tap/sync", auth=("alice", "a-pw"), params={"LANG": "ADQL", "QUERY": Q})
        assert r.status_code == 503 and b"TAP async" in r.content
        assert [v for v, _ in app.requests[-2:]] == ["cancel", "delete"]
    finally:
        app.polls_to_done = 2


def test_abort_cancels_the_hsc_job(gw, emu):
    import time
    app, _ = emu
    app.polls_to_done = 10_000
    try:
        s = requests.Session()
        s.auth = ("alice", "a-pw")
        job = s.post(gw[1] + "/tap/async", data={"LANG": "ADQL", "QUERY": Q, "PHASE": "RUN"}, allow_redirects=False)
        job = job.headers["Location"]
        t0 = time.monotonic()
        while not any(v == "status" for v, _ in app.requests[-3:]):
            assert time.monotonic() - t0 < 10
            time.sleep(0.05)
        s.post(job + "/phase", data={"PHASE": "ABORT"})
        t0 = time.monotonic()
        while "cancel" not in [v for v, _ in app.requests[-4:]]:
            assert time.monotonic() - t0 < 10, app.requests[-4:]
            time.sleep(0.05)
        assert s.get(job + "/phase").text == "ABORTED"
    finally:
        app.polls_to_done = 2
