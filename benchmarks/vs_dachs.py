"""vo-gateway against GAVO DaCHS on the same catalogue, same queries, same machine, one run.

    bash ../shared/tools/dachs-peer/setup.sh          # once: DaCHS on 127.0.0.1:8080, 1e6-row bench.main
    python benchmarks/vs_dachs.py                     # loads the same CSV into a gateway, measures both
    python benchmarks/vs_dachs.py --no-dachs --rows 10000 --quick     # the CI smoke (gateway only)

The catalogue is the peer's ``catalog.csv`` (``gen_catalog.py``, seed 42); without it, the same
generator (same algorithm and seed) writes it.  The gateway serves it as embedded table
``bench.main`` under gunicorn gthread (``--workers``, ``--threads``).  Both servers get the
queries of the peer's ``bench.py`` (20 random 1' cones in its patch, TAP ``SELECT TOP n * ...
ORDER BY source_id`` per format), timed with ``curl -w`` as it does, plus: the 1e6-row VOTable
(time to first byte, total, server RSS growth), SCS throughput under ``wrk`` with random
positions, the gateway overhead of the ``ivoa`` kind over a loopback TAP upstream, and how
latency and memory grow with rows (1e3 -> 1e6, 1e7 with ``--scale-rows 10000000``) and
concurrent clients (1 -> 64).  The real Gaia DR3 G<10 table of the embedded archive is served
by both too (``bench.gaia``; DaCHS ``gaia.main`` after ``benchmarks/dachs_gaia.py``): 1-degree
cones and the per-format query on it.  Prints tables and the issue 7 targets met or missed.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
PEER = Path(os.environ.get("WORK", "/var/tmp/dachs-peer"))
FORMATS = {  # label: (gateway FORMAT, DaCHS FORMAT, DaCHS 1.64-1.57 s baseline ratio target)
    "BINARY2": ("votable/b2", "votable/b2", 10),
    "BINARY": ("votable/b", "votable", None),
    "TABLEDATA": ("votable/td", "votable/td", 5),
    "CSV": ("csv", "csv", 5),
    "FITS": ("fits", "fits", 3),
}
BANDS = "grizy"


# -- the catalogue ------------------------------------------------------------------------------
def generate_catalog(out: Path, n: int, ra0=150.0, dec0=2.0, w=10.0) -> None:
    """The peer's gen_catalog.py (seed 42, same draws and formatting), so both servers can
    load byte-identical CSV."""
    rng = np.random.default_rng(42)
    with open(out, "w") as f:
        f.write(
            ",".join(["source_id", "ra", "dec"] + [f"{b}_mag" for b in BANDS] + [f"{b}_mag_err" for b in BANDS]) + "\n"
        )
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            sid = np.arange(start, start + m, dtype=np.int64) + 1_000_000_000_000
            ra = ra0 + (rng.random(m) - 0.5) * w
            dec = dec0 + (rng.random(m) - 0.5) * w
            base = rng.uniform(16.0, 25.0, m)
            mags = [(base + off + rng.normal(0, 0.3, m)).astype(np.float32) for off in (0.6, 0.2, 0.0, -0.1, -0.2)]
            errs = [(0.001 * np.exp((mg - 16.0) / 1.8)).astype(np.float32) for mg in mags]
            cols = (
                [sid.astype(str), np.char.mod("%.10f", ra), np.char.mod("%.10f", dec)]
                + [np.char.mod("%.4f", x) for x in mags]
                + [np.char.mod("%.5f", x) for x in errs]
            )
            lines = cols[0]
            for c in cols[1:]:
                lines = np.char.add(np.char.add(lines, ","), c)
            f.write("\n".join(lines.tolist()) + "\n")


def gateway_config(catalog: Path, work: Path, extra_rows: int | None = None) -> Path:
    """An embedded archive ``bench`` with ``main`` (the catalogue) and, for the scale table,
    ``big`` (the catalogue repeated to ``extra_rows`` rows, ids kept unique)."""
    types = {
        "source_id": pa.int64(),
        "ra": pa.float64(),
        "dec": pa.float64(),
        **{f"{b}_mag{e}": pa.float32() for b in BANDS for e in ("", "_err")},
    }
    t = pcsv.read_csv(catalog, convert_options=pcsv.ConvertOptions(column_types=types))
    pq.write_table(t, work / "main.parquet")
    ucd = dict(zip(BANDS, ["em.opt.B", "em.opt.R", "em.opt.I", "em.opt.I", "em.IR.J"]))
    cols = [
        {"name": "source_id", "ucd": "meta.id;meta.main", "description": "source identifier", "principal": True},
        {"name": "ra", "unit": "deg", "ucd": "pos.eq.ra;meta.main", "description": "RA (ICRS)", "principal": True},
        {"name": "dec", "unit": "deg", "ucd": "pos.eq.dec;meta.main", "description": "Dec (ICRS)", "principal": True},
    ]
    cols += [
        {"name": f"{b}_mag", "unit": "mag", "ucd": f"phot.mag;{ucd[b]}", "description": f"{b} AB mag"} for b in BANDS
    ]
    cols += [
        {"name": f"{b}_mag_err", "unit": "mag", "ucd": f"stat.error;phot.mag;{ucd[b]}", "description": f"{b} mag error"}
        for b in BANDS
    ]
    (work / "main.yaml").write_text(yaml.safe_dump({"columns": cols}))
    tables = [
        {
            "name": "main",
            "source": "main.parquet",
            "metadata": "main.yaml",
            "ra_column": "ra",
            "dec_column": "dec",
            "id_column": "source_id",
            "description": "dachs-peer synthetic catalogue",
        }
    ]
    if extra_rows and extra_rows > t.num_rows:
        reps = -(-extra_rows // t.num_rows)
        parts = [t.set_column(0, "source_id", pa.array(np.asarray(t["source_id"]) + k * 10**13)) for k in range(reps)]
        pq.write_table(pa.concat_tables(parts).slice(0, extra_rows), work / "big.parquet")
        tables.append(
            {
                **tables[0],
                "name": "big",
                "source": "big.parquet",
                "description": f"the catalogue repeated to {extra_rows} rows",
            }
        )
    tables.append(
        {
            "name": "gaia",
            "source": str(ROOT / "data/demo/gaia_dr3_g10.parquet"),
            "metadata": str(ROOT / "data/demo/gaia_dr3_g10.yaml"),
            "ra_column": "ra",
            "dec_column": "dec",
            "id_column": "source_id",
            "description": "Gaia DR3 G<10 (the embedded demo table)",
        }
    )
    cfg = {
        "service": {"title": "vo-gateway bench", "maxrec_default": 20000, "maxrec_hard": 100_000_000},
        "archives": {"bench": {"kind": "embedded", "adql_schema": "bench", "tables": tables}},
        "jobs": {"store": "sqlite:///var/jobs.sqlite", "results_dir": "var/results"},
        "limits": {"enabled": False},  # the benchmark is the load: no request limits
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_gateway(config: Path, workers: int, threads: int):
    sys.path.insert(0, str(ROOT))
    from gateway.testing import start_process

    return start_process(config, extra_args=["--workers", str(workers), "--threads", str(threads)])


# -- measuring ----------------------------------------------------------------------------------
FMT = "%{http_code} %{time_total} %{time_starttransfer} %{size_download}"


def curl(url: str, data: dict | None = None) -> dict:
    cmd = ["curl", "-sS", "-o", "/dev/null", "-w", FMT]
    for k, v in (data or {}).items():
        cmd += ["--data-urlencode", f"{k}={v}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout.split()
    return {"code": int(out[0]), "total": float(out[1]), "ttfb": float(out[2]), "bytes": int(float(out[3]))}


def tap(base: str, query: str, fmt: str | None = None, maxrec: int | None = None) -> dict:
    d = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query}
    if fmt:
        d["FORMAT"] = fmt
    if maxrec:
        d["MAXREC"] = str(maxrec)
    return curl(base + "/tap/sync", d)


def tree_rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` and its children (gunicorn master + workers), MiB."""
    pids, total = [pid], 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            pids += [int(k) for k in open(f"/proc/{pid}/task/{task}/children").read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            total += next(int(line.split()[1]) for line in open(f"/proc/{p}/status") if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total / 1024


class PeakRss:
    """Samples the RSS of a process tree every 20 ms while in use."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def __enter__(self):
        self.start = tree_rss_mib(self.pid) if self.pid else 0.0

        def run():
            while not self.stop.is_set():
                self.peak = max(self.peak, tree_rss_mib(self.pid))
                time.sleep(0.02)

        if self.pid:
            threading.Thread(target=run, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stop.set()

    @property
    def growth(self):
        return max(0.0, self.peak - self.start)


def gaia(name: str, base: str, table: str, scs_path: str, a) -> dict:
    """The real Gaia DR3 G<10 table (482,176 rows, all sky) on both servers: 1-degree cones at
    random positions (about 12 stars each) and the 100k-row query in each format."""
    rng = random.Random(5)
    pos = [(rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1)))) for _ in range(a.n)]
    return measure(name, base, table, scs_path, pos, 1.0, a)


def server(name: str, base: str, table: str, scs_path: str, pid: int | None, a) -> dict:
    """The peer bench.py's measurements (same positions, queries and formats) plus ours."""
    rng = random.Random(1)
    pos = [(rng.uniform(146, 154), rng.uniform(-2, 6)) for _ in range(a.n)]
    out = measure(name, base, table, scs_path, pos, 1 / 60, a)
    n = a.million
    out["million"] = {}
    for label, (gw_fmt, dachs_fmt, _) in FORMATS.items():  # DaCHS: its default VOTable only (~10 s each)
        if name != "gateway" and label != "BINARY":
            continue
        with PeakRss(pid) as mem:
            res = tap(base, f"SELECT TOP {n} * FROM {table}", gw_fmt if name == "gateway" else dachs_fmt, n)
        assert res["code"] == 200, res
        out["million"][label] = {
            "s": res["total"],
            "ttfb": res["ttfb"],
            "rss_growth": mem.growth,
            "rss_start": mem.start,
            "bytes": res["bytes"],
        }
    if shutil.which("wrk"):
        out["wrk"] = wrk(f"{base}/{scs_path}", a.wrk_seconds)
    return out


def measure(name: str, base: str, table: str, scs_path: str, pos: list, r: float, a) -> dict:
    """SCS and TAP cone medians over ``pos`` (radius ``r`` degrees), then ``SELECT TOP big *
    ... ORDER BY source_id`` in each format (median of ``reps``, after one warm-up)."""
    cone = "SELECT * FROM %s WHERE 1=CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', %.6f, %.6f, %.7f))"
    for ra, dec in pos[:3]:  # warm-up
        curl(f"{base}/{scs_path}?RA={ra:.6f}&DEC={dec:.6f}&SR={r:.7f}")
        tap(base, cone % (table, ra, dec, r))
    out = {"name": name}
    scs = [curl(f"{base}/{scs_path}?RA={ra:.6f}&DEC={dec:.6f}&SR={r:.7f}") for ra, dec in pos]
    assert all(x["code"] == 200 for x in scs), scs[:2]
    out["scs_ms"] = statistics.median(x["total"] for x in scs) * 1e3
    cones = [tap(base, cone % (table, ra, dec, r)) for ra, dec in pos]
    out["tap_cone_ms"] = statistics.median(x["total"] for x in cones) * 1e3
    q = f"SELECT TOP {a.big} * FROM {table} ORDER BY source_id"
    out["big"] = {}
    for label, (gw_fmt, dachs_fmt) in ((k, v[:2]) for k, v in FORMATS.items()):
        fmt = gw_fmt if name == "gateway" else dachs_fmt
        tap(base, q, fmt, a.big)  # warm-up (each server's first use of a writer)
        runs = [tap(base, q, fmt, a.big) for _ in range(a.reps)]
        assert all(x["code"] == 200 for x in runs), runs[0]
        out["big"][label] = {
            "s": statistics.median(x["total"] for x in runs),
            "ttfb": statistics.median(x["ttfb"] for x in runs),
            "bytes": runs[-1]["bytes"],
        }
    return out


WRK_LUA = """
math.randomseed(7)
request = function()
  local ra = 146 + math.random() * 8
  local dec = -2 + math.random() * 8
  return wrk.format("GET", string.format("%s?RA=%.6f&DEC=%.6f&SR=0.0166667", wrk.path, ra, dec))
end
done = function(summary, latency, requests)
  io.write(string.format("WRK %d %d %d %d %.3f\\n", summary.requests, summary.errors.status + summary.errors.connect
    + summary.errors.read + summary.errors.write + summary.errors.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99) / 1000))
end
"""


def wrk(url: str, seconds: int) -> dict:
    """SCS under load: wrk, 2 threads, 16 connections, random 1' cones in the patch."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_LUA)
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "-s", f.name, url], capture_output=True, text=True)
    os.unlink(f.name)
    line = next(line for line in out.stdout.splitlines() if line.startswith("WRK "))
    n, errors, us, p50, p99 = line.split()[1:]
    return {"rps": int(n) / (int(us) / 1e6), "errors": int(errors), "p50_ms": int(p50) / 1e3, "p99_ms": float(p99)}


def overhead(up_base: str, work: Path, a, name: str = "up") -> dict:
    """Wall time of a 1e5-row answer from a loopback TAP upstream's ``bench.main`` (the
    benchmark gateway itself: the fastest upstream there is, so the fixed cost shows most; or
    DaCHS), direct and through a second gateway fronting it with kind ``ivoa`` (CSV, BINARY2)."""
    cfg = {
        "archives": {
            name: {
                "kind": "ivoa",
                "tap_url": up_base + "/tap",
                "schemas": {"bench": name},
                "tables": ["bench.main"],
                "snapshot": str(work / f"{name}.json"),
                "compression": False,
            }
        },
        "jobs": {"store": f"sqlite:///var/jobs_{name}.sqlite", "results_dir": f"var/results_{name}"},
        "limits": {"enabled": False},
        "cache": {"ttl": 0},
    }  # each repetition goes upstream: the pass-through is measured, not the cache
    path = work / f"front_{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc, front = start_gateway(path, 1, 8)
    try:
        q = "SELECT TOP {n} source_id, ra, dec, g_mag, r_mag FROM {t} ORDER BY source_id"
        out = {}
        for fmt in ("csv", "votable/b2"):
            tap(front, q.format(n=a.big, t=f"{name}.main"), fmt, a.big)  # warm-up
            d, f = [], []
            for _ in range(a.overhead_reps):  # interleaved pairs: drift of the machine's load hits both alike
                d.append(tap(up_base, q.format(n=a.big, t="bench.main"), fmt, a.big)["total"])
                f.append(tap(front, q.format(n=a.big, t=f"{name}.main"), fmt, a.big)["total"])
            diff = np.subtract(f, d)
            out[fmt] = (
                statistics.median(d),
                statistics.median(f),
                float(np.median(diff)),
                float(np.percentile(diff, 25)),
                float(np.percentile(diff, 75)),
            )
        tiny = q.format(n=1, t="{}")  # the fixed cost of a request through the gateway
        d = [tap(up_base, tiny.format("bench.main"), "csv")["total"] for _ in range(a.overhead_reps)]
        f = [tap(front, tiny.format(f"{name}.main"), "csv")["total"] for _ in range(a.overhead_reps)]
        out["1 row"] = (statistics.median(d), statistics.median(f), statistics.median(f) - statistics.median(d), 0, 0)
        return out
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def scaling(base: str, pid: int, a) -> tuple[list, list]:
    """Latency and RSS growth per result size; throughput and latency per number of clients."""
    rows = []
    for n in [10**k for k in range(3, 8) if 10**k <= a.scale_rows]:
        table = "bench.main" if n <= a.catalog_rows else "bench.big"
        with PeakRss(pid) as mem:
            res = tap(base, f"SELECT TOP {n} * FROM {table}", "votable/b2", n)
        rows.append((n, res["total"], res["ttfb"], mem.growth, res["bytes"]))
    conc = []
    rng = random.Random(3)
    for clients in (1, 4, 16, 64):
        jobs = [(rng.uniform(146, 154), rng.uniform(-2, 6)) for _ in range(max(16, clients * 4))]
        q = "SELECT * FROM bench.main WHERE 1=CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {:.5f}, {:.5f}, 0.05))"
        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(clients) as ex:
            lat = list(ex.map(lambda p, q=q: tap(base, q.format(*p), "votable/b2")["total"], jobs))
        wall = time.perf_counter() - t0
        conc.append((clients, len(jobs) / wall, statistics.median(lat), float(np.percentile(lat, 90))))
    return rows, conc


# -- report -------------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dachs", default="http://127.0.0.1:8080", help="DaCHS base URL (dachs-peer setup.sh)")
    ap.add_argument("--dachs-pid", type=int, help="DaCHS pid (default: from the peer's pids.txt)")
    ap.add_argument("--no-dachs", action="store_true", help="measure the gateway only")
    ap.add_argument("--catalog", type=Path, default=PEER / "catalog.csv")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows to generate if --catalog is missing")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--n", type=int, default=20, help="cone positions")
    ap.add_argument("--big", type=int, default=100_000, help="rows of the per-format query")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--overhead-reps", type=int, default=21, help="interleaved direct/gateway pairs")
    ap.add_argument("--million", type=int, default=1_000_000)
    ap.add_argument("--scale-rows", type=int, default=1_000_000, help="largest result of the scale table (1e7 ok)")
    ap.add_argument("--wrk-seconds", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke)")
    ap.add_argument(
        "--only",
        default="servers,gaia,overhead,scaling",
        help="comma-separated parts to run: servers (the ratio table), gaia (the same on the "
        "real Gaia table; DaCHS needs benchmarks/dachs_gaia.py), overhead, scaling",
    )
    a = ap.parse_args(argv)
    if a.quick:
        a.n, a.big, a.reps, a.million, a.scale_rows, a.wrk_seconds = 3, 1000, 1, min(a.rows, 10_000), 10_000, 2
        a.overhead_reps = 2
    work = Path(tempfile.mkdtemp(prefix="vo-gateway-bench-"))
    catalog = a.catalog
    if not catalog.exists():
        catalog = work / "catalog.csv"
        generate_catalog(catalog, a.rows)
    a.catalog_rows = sum(1 for _ in open(catalog)) - 1
    config = gateway_config(catalog, work, a.scale_rows if a.scale_rows > a.catalog_rows else None)
    proc, base = start_gateway(config, a.workers, a.threads)
    try:
        print(
            f"# vo-gateway vs DaCHS, {a.catalog_rows} rows ({catalog}); {os.cpu_count()} CPUs; "
            f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        print(f"# gateway: gunicorn gthread, {a.workers} workers x {a.threads} threads at {base}")
        parts = set(a.only.split(","))
        results = [server("gateway", base, "bench.main", "scs/bench.main", proc.pid, a)] if "servers" in parts else []
        if results and not a.no_dachs:
            pid = a.dachs_pid
            if pid is None and (PEER / "pids.txt").exists():
                pid = next((int(v) for k, v in (ln.split() for ln in open(PEER / "pids.txt")) if k == "dachs"), None)
            results.append(server("dachs", a.dachs, "bench.main", "bench/q/cone/scs.xml", pid, a))
        g = []
        if "gaia" in parts:
            g = [gaia("gateway", base, "bench.gaia", "scs/bench.gaia", a)]
            if not a.no_dachs:
                g.append(gaia("dachs", a.dachs, "gaia.main", "gaia/q/cone/scs.xml", a))
        over = {}
        if "overhead" in parts:
            over["the benchmark gateway"] = overhead(base, work, a)
            if not a.no_dachs:
                over["DaCHS"] = overhead(a.dachs, work, a, "dachs")
        rows, conc = scaling(base, proc.pid, a) if "scaling" in parts else ([], [])
        report(results, over, rows, conc, a, g)
        print(f"# load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        shutil.rmtree(work, ignore_errors=True)


def report(results, over, rows, conc, a, gaia_results=()):
    if results:
        report_servers(results, a)
    if gaia_results:
        print("\nthe real Gaia DR3 G<10 table (482,176 rows; gateway bench.gaia, DaCHS gaia.main), 1-degree cones:")
        report_servers(list(gaia_results), a, million=False)
    for upstream, results in over.items():
        print(
            f"\ngateway overhead, {a.big}-row answer from a loopback TAP upstream ({upstream}) through "
            f"kind ivoa, {a.overhead_reps} interleaved pairs (median; paired difference median and quartiles):"
        )
        report_overhead(results)
    if rows:
        print("\nresult size (TAP sync SELECT TOP n *, BINARY2):")
        print(f"  {'rows':>10} {'total s':>9} {'first byte ms':>14} {'RSS growth MiB':>15} {'MB':>8} {'us/row':>8}")
    for n, total, ttfb, growth, nbytes in rows:
        print(
            f"  {n:>10} {total:>9.3f} {ttfb * 1e3:>14.1f} {growth:>15.1f} {nbytes / 1e6:>8.1f} {total / n * 1e6:>8.2f}"
        )
    if conc:
        print("\nconcurrent clients (TAP sync 3' cones, ~80 rows, BINARY2):")
        print(f"  {'clients':>8} {'queries/s':>10} {'p50 ms':>8} {'p90 ms':>8}")
    for clients, qps, p50, p90 in conc:
        print(f"  {clients:>8} {qps:>10.1f} {p50 * 1e3:>8.1f} {p90 * 1e3:>8.1f}")


def report_overhead(results):
    for fmt, (direct, front, diff, q1, q3) in results.items():
        if fmt == "1 row":
            print(
                f"  {fmt:<12} direct {direct * 1e3:.1f} ms, through the gateway {front * 1e3:.1f} ms: "
                f"{diff * 1e3:+.1f} ms fixed cost per request"
            )
            continue
        pct = diff / direct * 100
        print(
            f"  {fmt:<12} direct {direct:.3f} s, through the gateway {front:.3f} s: {diff * 1e3:+.1f} ms "
            f"[{q1 * 1e3:+.1f}, {q3 * 1e3:+.1f}] = {pct:+.1f} % (target <= 5 %: {verdict(pct <= 5)})"
        )


def report_servers(results, a, million=True):
    g = results[0]
    d = results[1] if len(results) > 1 else None
    print(f"\n{'measure':<34} {'vo-gateway':>12} {'DaCHS':>12} {'ratio':>8}  target")

    def line(label, gv, dv, unit, target=None, better="lower"):
        if dv is None:
            print(f"{label:<34} {gv:>10.3f}{unit:>2} {'-':>12} {'-':>8}")
            return
        ratio = dv / gv if better == "lower" else gv / dv
        t = "" if target is None else f"  >= {target}x faster: {verdict(ratio >= target)}"
        print(f"{label:<34} {gv:>10.3f}{unit:>2} {dv:>10.3f}{unit:>2} {ratio:>7.1f}x{t}")

    cone = "1'" if million else "1 deg"
    line(f"SCS {cone} cone median", g["scs_ms"], d and d["scs_ms"], "ms", 2)
    line(f"TAP sync {cone} cone median", g["tap_cone_ms"], d and d["tap_cone_ms"], "ms")
    for label, (_, _, target) in FORMATS.items():
        line(f"TAP {a.big} rows {label}", g["big"][label]["s"], d and d["big"][label]["s"], " s", target)
    for label in FORMATS:
        line(f"  first byte, {label}", g["big"][label]["ttfb"] * 1e3, d and d["big"][label]["ttfb"] * 1e3, "ms")
    if not million:
        return
    dm = d["million"]["BINARY"] if d else None
    for label, m in g["million"].items():
        line(f"TAP {a.million} rows {label}", m["s"], dm["s"] if dm and label == "BINARY" else None, " s")
        print(
            f"{'  first byte':<34} {m['ttfb'] * 1e3:>10.1f}ms  (target < 50 ms: {verdict(m['ttfb'] < 0.05)})"
            + (f"   DaCHS: {dm['ttfb'] * 1e3:.0f} ms" if dm and label == "BINARY" else "")
        )
        print(
            f"{'  server RSS growth':<34} {m['rss_growth']:>9.1f}MiB  (target < 50 MiB: "
            f"{verdict(m['rss_growth'] < 50)})"
            + (f"   DaCHS: {dm['rss_growth']:.0f} MiB" if dm and label == "BINARY" else "")
        )
    if "wrk" in g:
        w = g["wrk"]
        print(
            f"{'SCS under wrk (2 thr, 16 conn)':<34} {w['rps']:>9.0f}/s  errors {w['errors']}, p50 "
            f"{w['p50_ms']:.1f} ms, p99 {w['p99_ms']:.1f} ms  (target >= 500/s, 0 errors: "
            f"{verdict(w['rps'] >= 500 and w['errors'] == 0)})"
            + (f"   DaCHS: {d['wrk']['rps']:.0f}/s, {d['wrk']['errors']} errors" if d and "wrk" in d else "")
        )


if __name__ == "__main__":
    main()
