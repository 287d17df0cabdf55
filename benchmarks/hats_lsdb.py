"""Benchmark: the ``hats`` kind (issue 20) against LSDB called directly from Python, in one run
and on the same HATS catalogues (built by ``tests/hats_data.py`` with hats-import):

1. a 1' cone by SCS (HTTP to ``vo-gateway serve``) against ``catalog.cone_search(...).compute()``
   on an LSDB catalogue opened once;
2. an ``--upload``-row list (TAP_UPLOAD, VOTable BINARY2) crossmatched with Gaia within 1",
   against ``lsdb.from_dataframe(...).crossmatch(gaia)``;
3. a ``--big`` x ``--small`` generated crossmatch within 1" (TAP sync), against LSDB's
   crossmatch of the same catalogues with the same all-pairs algorithm;
4. the gateway worker's peak RSS while it streams cones of growing size (VmHWM reset before
   each request through ``/proc/<pid>/clear_refs``).

    python benchmarks/hats_lsdb.py [--big 10000000] [--small 1000000] [--upload 100000] [--repeat 3] [--quick]

Both sides are warmed first (the first crossmatch of a process compiles hats' numba code), then
run interleaved ``--repeat`` times; medians are printed.  The client asks for
``Accept-Encoding: identity`` (no gzip: LSDB's answer is not encoded either).  LSDB runs on Dask's threaded
scheduler with as many threads as the gateway archive's ``threads``.  The gateway answers in
CSV, read to the last byte by the client; LSDB's answer is its computed data frame.  The
overhead is (gateway - LSDB) / LSDB.  ``--quick`` is the CI smoke version.  Numbers are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
warnings.simplefilter("ignore")


def workers(proc) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]


def reset_peak(pids) -> None:
    """Reset VmHWM (peak RSS) of ``pids`` to their current RSS (Linux ``clear_refs`` 5)."""
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            pass


def peak_rss(pids) -> float:
    """The largest VmHWM (MiB) of ``pids``."""
    peak = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
    return peak / 1024


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big", type=int, default=10_000_000)
    ap.add_argument("--small", type=int, default=1_000_000)
    ap.add_argument("--upload", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cones", type=int, default=50)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.big, a.small, a.upload, a.repeat, a.cones = 200_000, 200_000, 1000, 1, 5
    import dask
    import hats_data
    import lsdb
    from astropy.table import Table
    from vo_gateway_hats.crossmatch import AllPairs

    from gateway.testing import start_process

    dask.config.set(scheduler="threads", num_workers=a.threads)
    t = time.time()
    gaia, big = hats_data.gaia(), hats_data.generated(a.big)
    small = hats_data.generated(a.small, seed=21) if a.small != a.big else big
    print(f"catalogues ready in {time.time() - t:.1f} s: gaia 482,176, big {a.big:,}, small {a.small:,} rows")
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}; archive and LSDB threads {a.threads}")
    tmp = Path(tempfile.mkdtemp())
    cfg = {
        "archives": {
            "sky": {
                "kind": "hats",
                "adql_schema": "hats",
                "threads": a.threads,
                "scan_rows": 10**12,
                "catalogs": [
                    {"name": "gaia", "path": str(gaia), "id_column": "source_id"},
                    {"name": "big", "path": str(big), "id_column": "obj_id"},
                    {"name": "small", "path": str(small), "id_column": "obj_id"},
                ],
            }
        },
        "jobs": {"store": f"sqlite:///{tmp}/j.sqlite", "results_dir": str(tmp / "r")},
        "limits": {"enabled": False},
        "service": {"maxrec_default": 10**9, "maxrec_hard": 10**9, "scs_max_sr": 10},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc, url = start_process(path, extra_args=("--workers", "1", "--threads", "4"))
    s = requests.Session()
    s.headers["Accept-Encoding"] = "identity"  # the gateway's work, not gzip's (LSDB's answer is not encoded either)

    def tap(query: str, **extra) -> tuple[int, int]:
        """POST a sync query, read the CSV answer to the end; (rows, bytes)."""
        files = extra.pop("files", None)
        r = s.post(
            f"{url}/tap/sync",
            data={"LANG": "ADQL", "QUERY": query, "RESPONSEFORMAT": "csv", **extra},
            files=files,
            stream=True,
        )
        r.raise_for_status()
        rows = size = 0
        for chunk in r.iter_content(1 << 20):
            rows += chunk.count(b"\n")
            size += len(chunk)
        return rows - 1, size

    try:
        pids = workers(proc)
        g_cat = lsdb.open_catalog(str(gaia))

        # -- 1. the 1' cone -------------------------------------------------------------
        rng = np.random.default_rng(3)
        centres = [
            (float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-1, 1))))) for _ in range(a.cones)
        ]
        # the worker compiles hats' numba code in the background after its fork; a crossmatch
        # waits for it, so the timings below do not share the cores with the compiler
        tap(
            "SELECT COUNT(*) FROM hats.gaia AS g JOIN hats.small AS x ON 1 = CONTAINS(POINT('ICRS', x.ra, x.dec), "
            "CIRCLE('ICRS', g.ra, g.dec, 1.0/3600)) WHERE 1 = CONTAINS(POINT('ICRS', g.ra, g.dec), CIRCLE('ICRS', 10, 10, 1))"
        )
        for ra, dec in centres[:3]:  # warm both
            s.get(f"{url}/scs/hats.gaia", params={"RA": ra, "DEC": dec, "SR": 1 / 60}).raise_for_status()
            g_cat.cone_search(ra, dec, 60).compute(progress_bar=False)
        gw, direct = [], []
        for ra, dec in centres:
            dt, r = timed(
                lambda ra=ra, dec=dec: s.get(f"{url}/scs/hats.gaia", params={"RA": ra, "DEC": dec, "SR": 1 / 60})
            )
            r.raise_for_status()
            gw.append(dt)
            direct.append(timed(lambda ra=ra, dec=dec: g_cat.cone_search(ra, dec, 60).compute(progress_bar=False))[0])
        mg, md = statistics.median(gw) * 1000, statistics.median(direct) * 1000
        print(
            f"1' cone on Gaia, {len(centres)} random centres: SCS over HTTP median {mg:.1f} ms "
            f"(p90 {np.percentile(gw, 90) * 1000:.1f}); LSDB cone_search().compute() median {md:.1f} ms; "
            f"gateway/LSDB {mg / md:.2f} [target <= 20 ms: {'met' if mg <= 20 else 'MISSED'}]"
        )

        # -- 2. the upload crossmatch ---------------------------------------------------
        up = hats_data.generated_table(a.small, seed=21).slice(0, a.upload)
        vot = io.BytesIO()
        Table(
            {
                "tid": up.column("obj_id").to_numpy(),
                "ra": up.column("ra").to_numpy(),
                "dec": up.column("dec").to_numpy(),
            }
        ).write(vot, format="votable", tabledata_format="binary2")
        q = (
            "SELECT u.tid, g.source_id, g.ra, g.dec, g.phot_g_mean_mag FROM TAP_UPLOAD.mine AS u JOIN hats.gaia AS g "
            "ON 1 = CONTAINS(POINT('ICRS', g.ra, g.dec), CIRCLE('ICRS', u.ra, u.dec, 1.0/3600))"
        )
        g_xm = lsdb.open_catalog(str(gaia), columns=["source_id", "ra", "dec", "phot_g_mean_mag"])
        frame = up.select(["obj_id", "ra", "dec"]).rename_columns(["tid", "ra", "dec"]).to_pandas()

        def gw_upload():
            return tap(q, UPLOAD="mine,param:mine", files={"mine": ("mine.xml", vot.getvalue())})[0]

        def lsdb_upload():
            left = lsdb.from_dataframe(frame, ra_column="ra", dec_column="dec", margin_threshold=None)
            return len(
                left.crossmatch(g_xm, algorithm=AllPairs(radius_arcsec=1.0), suffix_method="all_columns").compute(
                    progress_bar=False
                )
            )

        overhead("upload x Gaia", f'{a.upload:,}-row upload x Gaia (482,176), 1"', gw_upload, lsdb_upload, a.repeat)

        # -- 3. the catalogue crossmatch ------------------------------------------------
        q = (
            "SELECT b.obj_id, b.ra, b.dec, s.obj_id AS small_id, s.mag FROM hats.big AS b JOIN hats.small AS s "
            "ON 1 = CONTAINS(POINT('ICRS', s.ra, s.dec), CIRCLE('ICRS', b.ra, b.dec, 1.0/3600))"
        )
        b_cat = lsdb.open_catalog(str(big), columns=["obj_id", "ra", "dec"])
        s_cat = lsdb.open_catalog(str(small), columns=["obj_id", "ra", "dec", "mag"])

        def lsdb_big():
            return len(
                b_cat.crossmatch(s_cat, algorithm=AllPairs(radius_arcsec=1.0), suffix_method="all_columns").compute(
                    progress_bar=False
                )
            )

        reset_peak(pids)
        overhead(
            "catalogue crossmatch",
            f'{a.big:,} x {a.small:,} crossmatch, 1"',
            lambda: tap(q)[0],
            lsdb_big,
            a.repeat,
        )
        print(f"  gateway worker peak RSS during the crossmatches {peak_rss(pids):.0f} MiB")

        # -- 4. RSS against result size -------------------------------------------------
        q = "SELECT obj_id, ra, dec, mag FROM hats.big WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 30, 20, {r}))"
        print("RSS against result size (cones on big, CSV streamed):")
        for radius in (0.5, 5.0, 20.0, 60.0, 90.0):
            tap(q.format(r=radius))  # the pages cached, the first of each size
            base = peak_rss(pids)
            reset_peak(pids)
            dt, (rows, size) = timed(lambda radius=radius: tap(q.format(r=radius)))
            print(
                f"  {radius:>4} deg: {rows:>11,} rows, {size / 1e6:8.1f} MB in {dt:6.2f} s; "
                f"worker peak RSS {peak_rss(pids):.0f} MiB (before {base:.0f})"
            )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def overhead(label: str, title: str, gw, direct, repeat: int) -> None:
    """Warm both sides, run them interleaved ``repeat`` times, print the medians and overhead."""
    n_gw, n_direct = gw(), direct()
    tg, td = [], []
    for _ in range(repeat):
        dt, n = timed(gw)
        assert n == n_gw, (n, n_gw)
        tg.append(dt)
        dt, n = timed(direct)
        td.append(dt)
    mg, md = statistics.median(tg), statistics.median(td)
    over = 100 * (mg - md) / md
    print(
        f"{title}: gateway TAP {mg:.2f} s ({n_gw:,} rows), LSDB {md:.2f} s ({n_direct:,} rows); "
        f"overhead {over:+.0f} % [target <= 10 %: {'met' if over <= 10 else 'MISSED'}]"
        + ("" if n_gw == n_direct else f" ROW COUNTS DIFFER ({label})")
    )


if __name__ == "__main__":
    main()
