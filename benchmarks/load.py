"""Benchmark: many concurrent clients against vo-gateway under gunicorn as
``docs/deployment.md`` runs it (``vo-gateway serve --workers 2 --threads 8``), and the same load
against GAVO DaCHS on the same catalogue in the same run (the dachs-peer of ``vs_dachs.py``).

    python benchmarks/load.py [--clients 200] [--seconds 30] [--no-dachs] [--quick]

Each client loops for ``--seconds`` and picks requests by weight:
- 60 %: an SCS 1′ cone at a random position in the catalogue's field;
- 30 %: a small TAP sync query (TOP 10 in a 3′ cone);
- 10 %: an async job (create with ``PHASE=RUN``, block with ``WAIT`` until it ends, fetch the
  result, DELETE).
Printed per server and kind: requests, errors (transport failures, non-2xx/303 answers, DALI
``QUERY_STATUS=ERROR``), p50 and p99 latency, and throughput. The gateway's request limits are
off (``limits.enabled: false``): the benchmark is the load. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from vs_dachs import PEER, gateway_config, generate_catalog, start_gateway  # noqa: E402

FIELD = (150.0, 2.0, 10.0)  # the peer catalogue's field: centre ra, dec and width (degrees)


def one(kind: str, base: str, scs_path: str, table: str, s: requests.Session, rng: random.Random) -> bool:
    ra0, dec0, w = FIELD
    ra, dec = ra0 + rng.uniform(-w / 2.2, w / 2.2), dec0 + rng.uniform(-w / 2.2, w / 2.2)
    if kind == "scs":
        r = s.get(f"{base}/{scs_path}", params={"RA": ra, "DEC": dec, "SR": 1 / 60}, timeout=60)
        return r.ok and b'value="ERROR"' not in r.content
    q = (
        f"SELECT TOP 10 * FROM {table} WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
        f"CIRCLE('ICRS', {ra:.5f}, {dec:.5f}, 0.05))"
    )
    if kind == "tap":
        r = s.post(f"{base}/tap/sync", data={"LANG": "ADQL", "QUERY": q, "REQUEST": "doQuery"}, timeout=60)
        return r.ok and b'value="ERROR"' not in r.content
    r = s.post(
        f"{base}/tap/async", data={"LANG": "ADQL", "QUERY": q, "PHASE": "RUN"}, allow_redirects=False, timeout=60
    )
    if r.status_code != 303:
        return False
    job = r.headers["Location"]
    for _ in range(60):
        phase = s.get(job + "/phase", timeout=60).text.strip()
        if phase in ("COMPLETED", "ERROR", "ABORTED"):
            break
        s.get(job, params={"WAIT": 5, "PHASE": phase}, timeout=60)
    ok = phase == "COMPLETED" and s.get(job + "/results/result", timeout=60).ok
    s.delete(job, allow_redirects=False, timeout=60)
    return ok


def load(name: str, base: str, scs_path: str, table: str, clients: int, seconds: float) -> dict:
    kinds = ["scs"] * 6 + ["tap"] * 3 + ["async"]
    times: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        rng = random.Random(i)
        s = requests.Session()
        while time.monotonic() < stop:
            kind = rng.choice(kinds)
            t0 = time.perf_counter()
            try:
                ok = one(kind, base, scs_path, table, s, rng)
            except requests.RequestException:
                ok = False
            took = time.perf_counter() - t0
            with lock:
                times[kind].append(took)
                if not ok:
                    errors[kind] += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    wall = time.monotonic() - t0
    print(f"\n{name}: {clients} clients for {seconds:.0f} s (wall {wall:.1f} s)")
    print(f"  {'kind':<6} {'requests':>9} {'errors':>7} {'p50 ms':>9} {'p99 ms':>9} {'per s':>8}")
    out = {}
    for kind in ("scs", "tap", "async"):
        ms = sorted(x * 1000 for x in times[kind])
        if not ms:
            continue
        p50, p99 = statistics.median(ms), ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        out[kind] = {"n": len(ms), "errors": errors[kind], "p50": p50, "p99": p99, "rate": len(ms) / wall}
        print(f"  {kind:<6} {len(ms):>9} {errors[kind]:>7} {p50:>9.1f} {p99:>9.1f} {len(ms) / wall:>8.1f}")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--dachs", default="http://127.0.0.1:8080", help="DaCHS base URL (dachs-peer setup.sh)")
    ap.add_argument("--no-dachs", action="store_true")
    ap.add_argument("--catalog", type=Path, default=PEER / "catalog.csv")
    ap.add_argument("--quick", action="store_true", help="CI smoke: 10 clients for 3 s, gateway only")
    a = ap.parse_args(argv)
    if a.quick:
        a.clients, a.seconds, a.no_dachs = 10, 3, True
    work = Path(tempfile.mkdtemp(prefix="vo-gateway-load-"))
    catalog = a.catalog
    if not catalog.exists():
        catalog = work / "catalog.csv"
        generate_catalog(catalog, 20_000 if a.quick else 200_000)
    proc, base = start_gateway(gateway_config(catalog, work), a.workers, a.threads)
    try:
        print(f"# load: {os.cpu_count()} CPUs, catalogue {catalog}; load average {os.getloadavg()[0]:.2f} at start")
        print(f"# gateway: vo-gateway serve --workers {a.workers} --threads {a.threads} at {base}")
        g = load("vo-gateway", base, "scs/bench.main", "bench.main", a.clients, a.seconds)
        if not a.no_dachs:
            try:
                requests.get(a.dachs + "/tap/availability", timeout=5).raise_for_status()
            except requests.RequestException as e:
                print(f"\nDaCHS at {a.dachs} is not answering ({type(e).__name__}); run the dachs-peer setup.sh")
            else:
                d = load("DaCHS", a.dachs, "bench/q/cone/scs.xml", "bench.main", a.clients, a.seconds)
                print("\nratio gateway / DaCHS (p50, p99; lower is faster):")
                for kind in g:
                    if kind in d:
                        print(
                            f"  {kind:<6} p50 {g[kind]['p50'] / d[kind]['p50']:5.2f}  p99 "
                            f"{g[kind]['p99'] / d[kind]['p99']:5.2f}  errors {g[kind]['errors']} vs {d[kind]['errors']}"
                        )
        print(f"# load average {os.getloadavg()[0]:.2f} at end")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
