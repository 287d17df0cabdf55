"""Job state survives the gateway: SIGKILL during EXECUTING, restart, and the job store's
behaviour on SQLite and on a real PostgreSQL (UWS 1.1 §2.1.3; issue: persistent jobs)."""

import os
import signal
import time
from datetime import UTC
from xml.etree import ElementTree as ET

import pytest
import requests
from conftest import live_config

from gateway.testing import free_port, start_process

NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0"}
SLOW = (
    "SELECT COUNT(*) AS n FROM demo.gaia_dr3_g10 AS a, demo.gaia_dr3_g10 AS b "
    "WHERE a.phot_g_mean_mag + b.phot_g_mean_mag < -1"
)


def submit(url, query, **extra):
    r = requests.post(
        url + "/tap/async", data={"LANG": "ADQL", "QUERY": query, "PHASE": "RUN", **extra}, allow_redirects=False
    )
    assert r.status_code == 303
    return r.headers["Location"]


def phase(job, wait=None, only=None):
    params = {"WAIT": wait, "PHASE": only} if wait else {}
    return ET.fromstring(requests.get(job, params=params).content).findtext("uws:phase", namespaces=NS)


def test_sigkill_during_executing_then_restart(tmp_path):
    cfg = live_config(tmp_path)
    port = free_port()
    log = open(tmp_path / "gw.log", "w")
    proc, url = start_process(cfg, port=port, log=log)
    try:
        done = submit(url, "SELECT TOP 20 source_id FROM demo.gaia_dr3_g10 ORDER BY source_id", RESPONSEFORMAT="csv")
        while phase(done, 5) != "COMPLETED":
            pass
        before = requests.get(done + "/results/result").content
        running = submit(url, SLOW)
        assert phase(running, 10, "QUEUED") == "EXECUTING"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    proc, url2 = start_process(cfg, port=port, log=log)
    try:
        assert url2 == url
        t0 = time.monotonic()
        while phase(running) != "ERROR":
            assert time.monotonic() - t0 < 20, "the orphaned job was not reported"
            time.sleep(0.2)
        d = ET.fromstring(requests.get(running).content)
        msg = d.findtext("uws:errorSummary/uws:message", namespaces=NS)
        assert "stopped unexpectedly" in msg and "EXECUTING" in msg
        err = requests.get(running + "/error")
        assert err.status_code == 200 and b"stopped unexpectedly" in err.content
        r = requests.get(done + "/results/result")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv") and r.content == before
        assert len(r.text.splitlines()) == 21
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    from gateway.uws.store import JobStore

    url = f"sqlite:///{tmp_path}/j.sqlite" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    s = JobStore(url)
    yield s
    with s.engine.begin() as c:  # the PostgreSQL database is shared by the session
        from gateway.uws.store import executors_t, jobs_t

        c.execute(jobs_t.delete())
        c.execute(executors_t.delete())
    s.close()


def test_store_semantics(store):
    from datetime import datetime, timedelta

    from gateway.uws.job import Job, Phase, Result

    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    for i, owner in enumerate([None, "k1", None]):
        store.insert(
            Job(
                job_id=f"j{i}",
                service="tap",
                owner_key=owner,
                owner_id=owner,
                creation_time=t0 + timedelta(seconds=i),
                execution_duration=60,
                destruction=t0 + timedelta(days=1),
                parameters=[("QUERY", "SELECT 1"), ("UPLOAD", "a,param:x")],
            )
        )
    j = store.get("j0")
    assert j.parameters == [("QUERY", "SELECT 1"), ("UPLOAD", "a,param:x")] and j.creation_time == t0
    assert [x.job_id for x in store.list("tap", None)] == ["j0", "j2"]
    assert [x.job_id for x in store.list("tap", "k1")] == ["j1"]
    assert [x.job_id for x in store.list("tap", None, last=1)] == ["j2"]
    assert [x.job_id for x in store.list("tap", None, after=t0)] == ["j2"]
    # compare-and-set: only one of two concurrent transitions wins
    assert store.update("j0", only_in=(Phase.PENDING,), phase=Phase.QUEUED, executor_id="h:1:a")
    assert not store.update("j0", only_in=(Phase.PENDING,), phase=Phase.ABORTED)
    assert store.list("tap", None, phases=["QUEUED"])[0].job_id == "j0"
    store.update("j2", phase=Phase.COMPLETED, results=[Result("result", "text/csv", "/x", 3, 1)])
    assert store.get("j2").results[0].mime == "text/csv"
    store.update("j2", phase=Phase.ARCHIVED)
    assert [x.job_id for x in store.list("tap", None)] == ["j0"]  # ARCHIVED hidden unless asked
    assert [x.job_id for x in store.list("tap", None, phases=["ARCHIVED"])] == ["j2"]
    # liveness: a job on an executor without beats is an orphan; a beating one is not
    assert [j.job_id for j, _ in store.orphans(60, lambda *a: False)] == ["j0"]
    store.beat("h:1:a", "h", 1)
    assert store.orphans(60, lambda *a: False) == []
    assert [j.job_id for j, _ in store.orphans(60, lambda host, pid, eid: pid == 1)] == ["j0"]
    store.prune(3600)
    assert store.orphans(60, lambda *a: False) == []  # a fresh beat is kept
    store.prune(-1)
    assert [j.job_id for j, _ in store.orphans(60, lambda *a: False)] == ["j0"]
    assert sorted(store.expired(t0 + timedelta(days=2))) == ["j0", "j1", "j2"]
    assert store.delete("j1") and store.get("j1") is None


def test_two_gateway_processes_share_jobs_through_postgresql(tmp_path, postgres_url):
    import sqlalchemy as sa

    sa.create_engine(postgres_url).connect().close()
    cfg = live_config(tmp_path, jobs={"store": postgres_url})
    log = open(tmp_path / "gw.log", "w")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:  # both start at once
        (a, url_a), (b, url_b) = pool.map(lambda _: start_process(cfg, log=log), range(2))
    try:
        job = submit(url_a, "SELECT TOP 3 id FROM demo.s82_rrlyrae ORDER BY id")
        other = job.replace(url_a, url_b)
        while phase(other, 5) != "COMPLETED":
            pass
        assert len(requests.get(other + "/results/result", params={}).content) > 0
        ids = ET.fromstring(requests.get(url_b + "/tap/async").content).findall("uws:jobref", NS)
        assert job.rsplit("/", 1)[1] in [j.get("id") for j in ids]
        slow = submit(url_a, SLOW)
        assert phase(slow, 10, "QUEUED") == "EXECUTING"
        r = requests.post(slow.replace(url_a, url_b) + "/phase", data={"PHASE": "ABORT"}, allow_redirects=False)
        assert r.status_code == 303 and phase(slow) == "ABORTED"
        # process A noticed the ABORT and interrupted its query: it runs a new job at once
        quick = submit(url_a, "SELECT TOP 1 id FROM demo.s82_rrlyrae", EXECUTIONDURATION="30")
        t0 = time.monotonic()
        while phase(quick, 5) not in ("COMPLETED", "ERROR"):
            pass
        assert phase(quick) == "COMPLETED" and time.monotonic() - t0 < 20  # vs hours for SLOW; loaded CI
    finally:
        for p in (a, b):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(10)


def test_jobs_command_lists_shows_and_deletes(tmp_path):
    import subprocess
    import sys

    from conftest import demo_config

    from gateway.testing import make_app

    cfg = live_config(tmp_path)
    app = make_app(demo_config(tmp_path), load_entrypoints=True)
    c = app.test_client()
    job_id = (
        c.post("/tap/async", data={"LANG": "ADQL", "QUERY": "SELECT TOP 1 id FROM demo.s82_rrlyrae", "RUNID": "cli"})
        .headers["Location"]
        .rsplit("/", 1)[1]
    )
    app.extensions["vo_gateway"].jobs.close()

    def cli(*args):
        out = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "jobs", "--config", str(cfg), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        return out.returncode, out.stdout

    rc, out = cli("list", "--phase", "PENDING")
    assert rc == 0 and f"{job_id}\ttap\tPENDING" in out and "SELECT TOP 1 id" in out
    assert cli("list", "--phase", "COMPLETED")[1].strip() == ""
    rc, out = cli("show", job_id)
    assert rc == 0 and "<uws:runId>cli</uws:runId>" in out
    assert cli("delete", job_id) == (0, f"deleted {job_id}\n")
    assert cli("show", job_id)[0] == 1
