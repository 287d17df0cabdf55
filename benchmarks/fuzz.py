"""The full ADQL fuzz run (issue 22): N generated and mutated queries (default 20,000) against
the embedded demo archive, in-process (Flask test client), every answer read to its end,
cycling through seven output formats.  Prints the HTTP status counts, every query answered
5xx or with a broken stream, the slowest query, the peak RSS of the process and the queries
that raised it most.  Exits 1 if any answer was bad.

    python benchmarks/fuzz.py [--n 20000] [--seed 22]
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=22)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    from conftest import demo_config

    from gateway import fuzz
    from gateway.testing import make_app

    app = make_app(demo_config(Path(tempfile.mkdtemp())), load_entrypoints=True)
    client = app.test_client()
    status, bad, growth = {}, [], []
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    chunk = 500
    for start in range(0, args.n, chunk):  # per chunk: which chunk raised the peak
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        res = fuzz.run(client, min(chunk, args.n - start), seed=args.seed * 100003 + start)
        for k, v in res["status"].items():
            status[k] = status.get(k, 0) + v
        bad += res["bad"]
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        growth.append(((after - before) / 1024, start, res["slowest"]))
    took = time.perf_counter() - t0
    print(
        f"{args.n} queries in {took:.1f} s ({took / args.n * 1000:.2f} ms each): status {dict(sorted(status.items(), key=str))}"
    )
    print(f"bad answers (5xx, broken streams, in-band internal errors): {len(bad)}")
    for b in bad[:20]:
        print("  ", repr(b)[:300])
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (start {rss0 / 1024:.0f} MiB)")
    for g, start, (slow, q) in sorted(growth, reverse=True)[:3]:
        print(f"  +{g:.0f} MiB in queries {start}-{start + chunk - 1}; slowest {slow * 1000:.0f} ms: {q[:150]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
