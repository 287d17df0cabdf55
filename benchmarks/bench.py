"""Benchmark: SCS/TAP cone latency and 100k-row TAP throughput per output format, against a
``vo-gateway serve`` process (gunicorn gthread) on the embedded archive.  Run on demand:

    python benchmarks/bench.py [--rows 100000] [--repeat 5] [--url http://127.0.0.1:8000]

Prints medians; ``--quick`` is the CI smoke version (tiny sizes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ["votable", "votable/td", "votable/b", "csv", "tsv", "fits", "json"]


def start_server():
    sys.path.insert(0, str(ROOT))
    from gateway.testing import start_process

    return start_process(ROOT / "config.yaml")


def timed(fn, repeat):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.rows, a.repeat = 1000, 1
    proc = None
    url = a.url
    if url is None:
        proc, url = start_server()
    s = requests.Session()
    rng = np.random.default_rng(1)
    try:
        print(f"# vo-gateway benchmark against {url}; load average {os.getloadavg()}")
        pts = [(float(rng.uniform(0, 360)), float(rng.uniform(-80, 80))) for _ in range(a.repeat * 4)]
        lat = []
        for ra, dec in pts:
            t0 = time.perf_counter()
            r = s.get(url + "/scs/demo.gaia_dr3_g10", params={"RA": ra, "DEC": dec, "SR": 1 / 60})
            r.raise_for_status()
            lat.append(time.perf_counter() - t0)
        print(
            f"SCS 1' cone on demo.gaia_dr3_g10 (482k rows): median {statistics.median(lat) * 1e3:.1f} ms, "
            f"p90 {np.percentile(lat, 90) * 1e3:.1f} ms ({len(lat)} requests)"
        )
        lat = []
        for ra, dec in pts:
            q = (
                f"SELECT source_id, ra, dec FROM demo.gaia_dr3_g10 WHERE "
                f"1=CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, 0.0166667))"
            )
            t0 = time.perf_counter()
            s.get(url + "/tap/sync", params={"LANG": "ADQL", "QUERY": q}).raise_for_status()
            lat.append(time.perf_counter() - t0)
        print(f"TAP sync 1' cone: median {statistics.median(lat) * 1e3:.1f} ms")
        q = f"SELECT TOP {a.rows} * FROM demo.gaia_dr3_g10"
        print(f"TAP sync {a.rows} rows x 6 columns (SELECT TOP n * FROM demo.gaia_dr3_g10):")
        print(f"  {'format':<12} {'median s':>9} {'rows/s':>10} {'MB':>7} {'first byte ms':>14}")
        for fmt in FORMATS:

            def run(fmt=fmt):
                t0 = time.perf_counter()
                r = s.get(
                    url + "/tap/sync",
                    params={"LANG": "ADQL", "QUERY": q, "RESPONSEFORMAT": fmt, "MAXREC": a.rows},
                    stream=True,
                )
                first = None
                n = 0
                for chunk in r.iter_content(1 << 16):
                    if first is None:
                        first = time.perf_counter() - t0
                    n += len(chunk)
                r.raise_for_status()
                return n, first

            med, (nbytes, first) = timed(run, a.repeat)
            print(f"  {fmt:<12} {med:>9.3f} {a.rows / med:>10.0f} {nbytes / 1e6:>7.1f} {first * 1e3:>14.1f}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
