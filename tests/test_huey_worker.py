"""Scale-out: jobs through huey on a real Redis, run by a separately started
``vo-gateway worker`` process (issue: executor behind one interface)."""

import os
import signal
import subprocess
import sys
import time

import requests
from conftest import live_config
from test_jobs_durability import SLOW, phase, submit

from gateway.testing import start_process


def start_worker(cfg, log):
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "worker", "--config", str(cfg), "--workers", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def test_jobs_run_in_a_separate_worker_process(tmp_path, redis_url):
    import pyvo

    cfg = live_config(tmp_path, jobs={"executor": "huey", "queue_url": redis_url})
    log = open(tmp_path / "gw.log", "w")
    gw, url = start_process(cfg, log=log)
    worker = None
    try:
        job = submit(url, "SELECT TOP 4 id FROM demo.s82_rrlyrae ORDER BY id")
        assert phase(job, 1) == "QUEUED"  # no worker yet: the gateway itself does not run it
        worker = start_worker(cfg, open(tmp_path / "worker.log", "w"))
        t0 = time.monotonic()
        while phase(job, 5) != "COMPLETED":
            assert time.monotonic() - t0 < 60, (tmp_path / "worker.log").read_text()
        assert len(requests.get(job + "/results/result").content) > 0
        res = pyvo.dal.TAPService(url + "/tap").run_async("SELECT TOP 2 source_id FROM demo.gaia_dr3_g10")
        assert len(res) == 2
        # ABORT reaches the worker (another process): its only thread is freed for the next job
        slow = submit(url, SLOW)
        assert phase(slow, 20, "QUEUED") == "EXECUTING"
        requests.post(slow + "/phase", data={"PHASE": "ABORT"})
        quick = submit(url, "SELECT TOP 1 id FROM demo.s82_rrlyrae")
        t0 = time.monotonic()
        while phase(quick, 5) not in ("COMPLETED", "ERROR"):
            assert time.monotonic() - t0 < 20
        assert phase(quick) == "COMPLETED" and phase(slow) == "ABORTED"
    finally:
        for p in (worker, gw):
            if p is not None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(20)


def test_worker_killed_mid_job(tmp_path, redis_url):
    """kill -9 of the worker while it runs a job: the job ends in ERROR saying its process
    stopped (found by the gateway's liveness check), a new worker runs new jobs, and a result
    completed before the kill stays byte-identical."""
    cfg = live_config(tmp_path, jobs={"executor": "huey", "queue_url": redis_url})
    gw, url = start_process(cfg, log=open(tmp_path / "gw.log", "w"))
    worker = start_worker(cfg, open(tmp_path / "worker.log", "w"))
    try:
        done = submit(url, "SELECT TOP 50 source_id, ra FROM demo.gaia_dr3_g10 ORDER BY source_id")
        t0 = time.monotonic()
        while phase(done, 5) != "COMPLETED":
            assert time.monotonic() - t0 < 60, (tmp_path / "worker.log").read_text()
        before = requests.get(done + "/results/result").content
        slow = submit(url, SLOW)
        assert phase(slow, 20, "QUEUED") == "EXECUTING"
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        t0 = time.monotonic()
        while phase(slow, 2) == "EXECUTING":
            assert time.monotonic() - t0 < 30, "the killed worker's job was never noticed"
        assert phase(slow) == "ERROR"
        message = requests.get(slow + "/error").text
        assert "stopped unexpectedly" in message, message
        worker = start_worker(cfg, open(tmp_path / "worker2.log", "w"))
        quick = submit(url, "SELECT TOP 1 id FROM demo.s82_rrlyrae")
        t0 = time.monotonic()
        while phase(quick, 5) not in ("COMPLETED", "ERROR"):
            assert time.monotonic() - t0 < 60
        assert phase(quick) == "COMPLETED"
        assert requests.get(done + "/results/result").content == before
    finally:
        for p in (worker, gw):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(20)
