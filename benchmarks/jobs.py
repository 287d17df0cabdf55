"""Benchmark: UWS job throughput and WAIT wake-up latency against a ``vo-gateway serve`` process
(gunicorn gthread, in-process executor, SQLite job store by default).  Run on demand:

    python benchmarks/jobs.py [--jobs 200] [--clients 4] [--url http://127.0.0.1:8000]

* throughput: ``--clients`` threads each create small jobs with ``PHASE=RUN``, block with
  ``WAIT`` until COMPLETED, fetch ``results/result`` and DELETE the job; prints jobs/s.
* WAIT wake-up: a client blocks in ``GET {job}?WAIT=30`` on a PENDING job; another POSTs
  ``PHASE=RUN``; prints the time from the RUN to the blocked GET returning (median, p90).

``--quick`` is the CI smoke version.  Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0"}
QUERY = "SELECT TOP 10 source_id, ra, dec FROM demo.gaia_dr3_g10 WHERE phot_g_mean_mag < 6"


def start_server(tmp: Path):
    import yaml

    sys.path.insert(0, str(ROOT))
    from gateway.testing import start_process

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["base_dir"] = str(ROOT)
    cfg["jobs"] = {"store": f"sqlite:///{tmp}/jobs.sqlite", "results_dir": str(tmp / "results"), "workers": 4}
    cfg["limits"] = {"enabled": False}  # the benchmark is the load: no request limits
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
    return start_process(tmp / "config.yaml")


def phase(doc: bytes) -> str:
    return ET.fromstring(doc).findtext("uws:phase", namespaces=NS)


def one_job(url: str, s: requests.Session) -> float:
    t0 = time.perf_counter()
    r = s.post(url + "/tap/async", data={"LANG": "ADQL", "QUERY": QUERY, "PHASE": "RUN"}, allow_redirects=False)
    job = r.headers["Location"]
    while phase(s.get(job, params={"WAIT": 30}).content) not in ("COMPLETED", "ERROR", "ABORTED"):
        pass
    s.get(job + "/results/result").raise_for_status()
    s.delete(job, allow_redirects=False)
    return time.perf_counter() - t0


def wake_latency(url: str, s: requests.Session) -> float:
    job = s.post(url + "/tap/async", data={"LANG": "ADQL", "QUERY": QUERY}, allow_redirects=False).headers["Location"]
    returned = {}

    def blocked():
        requests.get(job, params={"WAIT": 30})
        returned["t"] = time.perf_counter()

    th = threading.Thread(target=blocked)
    th.start()
    time.sleep(0.3)  # the GET is now blocking on PENDING
    t0 = time.perf_counter()
    s.post(job + "/phase", data={"PHASE": "RUN"}, allow_redirects=False)
    th.join()
    s.delete(job, allow_redirects=False)
    return returned["t"] - t0


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--wakes", type=int, default=20)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.jobs, a.clients, a.wakes = 8, 2, 3
    proc, url = None, a.url
    tmp = tempfile.TemporaryDirectory()
    if url is None:
        proc, url = start_server(Path(tmp.name))
    try:
        print(f"# vo-gateway UWS benchmark against {url}; load average {os.getloadavg()}")
        s = requests.Session()
        one_job(url, s)  # warm up
        t0 = time.perf_counter()
        with ThreadPoolExecutor(a.clients) as pool:
            lat = list(pool.map(lambda _: one_job(url, requests.Session()), range(a.jobs)))
        wall = time.perf_counter() - t0
        print(
            f"job throughput: {a.jobs} jobs, {a.clients} clients: {a.jobs / wall:.1f} jobs/s; "
            f"create->result->delete median {statistics.median(lat) * 1e3:.1f} ms, p90 {np.percentile(lat, 90) * 1e3:.1f} ms"
        )
        wakes = [wake_latency(url, s) for _ in range(a.wakes)]
        print(
            f"WAIT wake-up after PHASE=RUN: median {statistics.median(wakes) * 1e3:.1f} ms, "
            f"p90 {np.percentile(wakes, 90) * 1e3:.1f} ms ({len(wakes)} waits)"
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        tmp.cleanup()


if __name__ == "__main__":
    main()
