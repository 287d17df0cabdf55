"""Limits (gateway/limits.py, docs/deployment.md § Limits): per-user request rates seen from
pyvo as DALRateLimitError with Retry-After; per-address rates; rates shared through Redis by two
gateways; the cap on a user's concurrent async jobs; the cap on concurrent requests to one
upstream."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from gateway.testing import make_app, parse_votable, serve
from tests.conftest import demo_config

Q = "SELECT TOP 1 ra FROM demo.sdss_stars"
SLOW = (
    "SELECT COUNT(*) AS n FROM demo.gaia_dr3_g10 AS a, demo.gaia_dr3_g10 AS b "
    "WHERE a.phot_g_mean_mag + b.phot_g_mean_mag < -1"
)


def app_with(tmp_path, **limits):
    cfg = demo_config(tmp_path, limits={"enabled": True, **limits})
    return make_app(cfg, load_entrypoints=True)


def test_pyvo_sees_429_with_retry_after(tmp_path):
    """pyvo raises DALRateLimitError (with the Retry-After seconds) where it checks the HTTP
    status: job creation and the VOSI documents.  On a sync query it reads the DALI error
    document first, so the user gets DALQueryError with the limit and the wait in its text."""
    import pyvo
    from pyvo.dal.exceptions import DALQueryError, DALRateLimitError

    app = app_with(tmp_path, per_user={"tap": "3/minute", "scs": "2/minute"})
    with serve(app) as url:
        tap = pyvo.dal.TAPService(url + "/tap")
        for _ in range(3):
            assert len(tap.run_sync(Q)) == 1
        with pytest.raises(DALRateLimitError) as e:
            tap.submit_job(Q)
        assert e.value.code == 429 and 0 < e.value.retry_after_seconds <= 60
        with pytest.raises(DALRateLimitError):
            pyvo.dal.TAPService(url + "/tap").tables  # noqa: B018 - the VOSI request is the test
        with pytest.raises(DALQueryError, match=r"too many tap requests: the limit is 3 per 1 minute; retry in \d+ s"):
            tap.run_sync(Q)
        scs = url + "/scs/demo.sdss_stars"
        assert [requests.get(scs, params={"RA": 200, "DEC": 36, "SR": 0.1}).status_code for _ in range(2)] == [200, 200]
        r = requests.get(scs, params={"RA": 200, "DEC": 36, "SR": 0.1})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        _, status, _ = parse_votable(r.content)
        assert status == "ERROR" and "too many scs requests" in r.text
        # another user (HTTP Basic actor) has a budget of their own; the probes are never limited
        assert requests.get(scs, params={"RA": 200, "DEC": 36, "SR": 0.1}, auth=("ann", "x")).status_code == 200
        assert all(requests.get(url + "/healthz").ok for _ in range(5))
    app.extensions["vo_gateway"].jobs.close()


def test_per_address_limit(tmp_path):
    app = app_with(tmp_path, per_user={}, per_address="4/minute")
    c = app.test_client()
    codes = [c.get("/tap/sync", query_string={"LANG": "ADQL", "QUERY": Q}).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]
    assert c.get("/ui/jobs").status_code == 200  # the pages are not counted
    app.extensions["vo_gateway"].jobs.close()


def test_rates_are_shared_through_redis(tmp_path, redis_url):
    """Two gateways (two processes in production) on one Redis count one budget."""
    a = app_with(tmp_path / "a", storage_url=redis_url, per_user={"tap": "3/minute"}, per_address=None)
    b = app_with(tmp_path / "b", storage_url=redis_url, per_user={"tap": "3/minute"}, per_address=None)
    q = {"LANG": "ADQL", "QUERY": Q}
    codes = [c.get("/tap/sync", query_string=q).status_code for c in (a.test_client(), b.test_client()) * 2]
    assert codes == [200, 200, 200, 429]
    for app in (a, b):
        app.extensions["vo_gateway"].jobs.close()


def test_concurrent_async_jobs_per_user(tmp_path):
    app = app_with(tmp_path, async_jobs_per_user=1)
    c = app.test_client()
    first = c.post("/tap/async", data={"LANG": "ADQL", "QUERY": SLOW, "PHASE": "RUN"}).headers["Location"]
    second = c.post("/tap/async", data={"LANG": "ADQL", "QUERY": Q, "PHASE": "RUN"})
    assert second.status_code == 429 and int(second.headers["Retry-After"]) > 0
    assert b"limits.async_jobs_per_user" in second.data
    pending = c.post("/tap/async", data={"LANG": "ADQL", "QUERY": Q}).headers["Location"]  # PENDING is fine
    c.post(first + "/phase", data={"PHASE": "ABORT"})
    for _ in range(200):
        if c.get(first + "/phase").data == b"ABORTED":
            break
        time.sleep(0.05)
    assert c.post(pending + "/phase", data={"PHASE": "RUN"}).status_code == 303
    app.extensions["vo_gateway"].jobs.close()


def test_upstream_concurrency_is_capped_per_archive():
    """Eight threads call one slow upstream through sessions of their own: at most the
    configured number of requests is ever in flight there."""
    from gateway import upstream
    from gateway.upstream import UpstreamSession, origin

    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self):
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
            time.sleep(0.2)
            with lock:
                state["now"] -= 1
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_port}/x"
    upstream.set_concurrency(3)
    try:

        def one(stream: bool):
            s = UpstreamSession({origin(url)}, 10, allow_private=True)
            r = s.get(url, stream=stream)
            assert r.content == b"ok"
            r.close()

        threads = [threading.Thread(target=one, args=(i % 2 == 0,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert state["max"] == 3
    finally:
        upstream.set_concurrency(16)
        srv.shutdown()
