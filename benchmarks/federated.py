"""Benchmark: the federated planner (issue 14) against the client-side way of doing the same.

A target list uploaded to the gateway and crossmatched with Pan-STARRS DR2 ``mean`` on the
MAST emulator (``tests/emulators/mast.py``, a separate process that waits ``--latency``
seconds per request, like a remote service's round trip), against the same crossmatch done by
``stilts coneskymatch`` through the gateway's own SCS endpoint with ``parallel=1`` and
``parallel=5`` (its maximum; STILTS sends one cone per target itself).  Both answers are compared with the
astropy ground truth.  Also: time to the first byte of the federated answer, the planner's own
cost per query (analysis and planning, no fetch), and the gateway process's peak RSS.

    python benchmarks/federated.py [--targets 1000] [--latency 0.02] [--concurrency 8]

The planner groups nearby targets into covering cones (``planner.cone_group_size``), so it
sends fewer requests than there are targets; the per-target floor shows what that saves.
``--quick`` is the CI smoke version.  Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
F = (33.639837321, -0.766719986)  # an emulated field (tests/emulators/skymapper.py FIELDS[0])
RADIUS = 1.5 / 3600  # match radius, deg
EMULATOR = """
import sys, time
sys.path.insert(0, {tests!r})
from werkzeug.serving import make_server
from emulators.mast import mast_app
srv = make_server("127.0.0.1", {port}, mast_app(extra_fields=[{field!r}], latency={latency}), threaded=True)
print("ready", flush=True)
srv.serve_forever()
"""


def start_emulator(latency: float):
    from gateway.testing import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", EMULATOR.format(tests=str(ROOT / "tests"), port=port, field=F, latency=latency)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc, f"http://127.0.0.1:{port}"


def peak_rss_mib(pid: int) -> float:
    """Peak RSS (VmHWM) of a process and its children (gunicorn master and workers), MiB."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total / 1024


def truth(targets, ids, ra, dec) -> set[tuple[int, int]]:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    im, it, sep, _ = SkyCoord(targets[1] * u.deg, targets[2] * u.deg).search_around_sky(
        SkyCoord(ra * u.deg, dec * u.deg), RADIUS * u.deg
    )
    keep = sep.deg < RADIUS
    return {(int(targets[0][i]), int(ids[j])) for i, j in zip(it[keep], im[keep])}


def emulator_floor(emu_url: str, targets, concurrency: int) -> float:
    """Wall time of the same cone requests sent straight to the emulator by ``concurrency``
    threads (a lower bound for any client of it on this machine)."""
    from concurrent.futures import ThreadPoolExecutor

    u = emu_url + "/api/v0.1/panstarrs/dr2/mean.csv"
    local = __import__("threading").local()

    def one(i):
        s = getattr(local, "s", None) or requests.Session()
        local.s = s
        return s.get(
            u,
            params={"ra": targets[1][i], "dec": targets[2][i], "radius": RADIUS, "columns": "[objID,raMean,decMean]"},
            timeout=60,
        ).status_code

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        assert set(pool.map(one, range(len(targets[0])))) == {200}
    return time.perf_counter() - t0


def first_byte_after_fetch(app, gw) -> None:
    """A two-archive cone join (demo x mast) in this process: the time from the slower
    sub-query's last row to the first byte of the answer (local evaluation + writer start)."""
    plans = []
    run = gw.planner.run

    def capture(plan, maxrec, context):
        plans.append(plan)
        return run(plan, maxrec, context)

    gw.planner.run = capture
    q = (
        "SELECT g.source_id, m.objID FROM demo.gaia_dr3_g10 AS g JOIN mast_ps1dr2.mean AS m "
        "ON DISTANCE(POINT('ICRS', g.ra, g.dec), POINT('ICRS', m.raMean, m.decMean)) < 0.01 "
        f"WHERE 1 = CONTAINS(POINT('ICRS', g.ra, g.dec), CIRCLE('ICRS', {F[0]}, {F[1]}, 0.9))"
    )
    gaps = []
    client = app.test_client()
    for _ in range(5):
        r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": q}, buffered=False)
        chunks = iter(r.response)
        next(chunks)
        t_first = time.monotonic()
        b"".join(chunks)
        gaps.append((t_first - max(s.finished for s in plans[-1].steps)) * 1000)
    gw.planner.run = run
    print(
        f"  two-archive cone join: first byte {np.median(gaps):.1f} ms (median of 5) after the slower "
        f"sub-query's last row ({plans[-1].steps[-1].rows} mast rows)"
    )


def local_join(gw, n: int, label: str) -> None:
    """RSS growth of a local join of ``n`` uploaded rows with the demo Gaia table (482,176
    rows, fetched by join key), written as BINARY2 VOTable to nowhere."""
    import threading

    import pyarrow as pa

    from gateway.adql import analyze
    from gateway.catalogue import UploadOverlay
    from gateway.schema import Column
    from gateway.schema import Table as T
    from gateway.uploads import UploadTable

    ids = np.asarray(
        gw.catalogue.archives["demo"]
        .cursor()
        .execute("SELECT source_id FROM demo.gaia_dr3_g10")
        .fetchnumpy()["source_id"]
    )
    rng = np.random.default_rng(5)
    sid = rng.choice(ids, n)
    up = UploadTable(
        T("TAP_UPLOAD", "t", [Column("tid", "long"), Column("sid", "long")]),
        pa.table({"tid": np.arange(n), "sid": sid}),
    )
    q = analyze(
        "SELECT u.tid, g.source_id, g.phot_g_mean_mag FROM TAP_UPLOAD.t AS u "
        "JOIN demo.gaia_dr3_g10 AS g ON g.source_id = u.sid",
        UploadOverlay(gw.catalogue, {"t": up}),
    )
    q.uploads = {"t": up}
    fmt = gw.formats.lookup("votable/b2")

    def rss() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    base, peak, done = rss(), [0.0], threading.Event()

    def sample():
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss())

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    stream = gw.planner.run(gw.planner.plan(q), n + 1, None)
    counted = [0]

    def count(batches):
        for b in batches:
            counted[0] += b.num_rows
            yield b

    stream.batches = count(stream.batches)
    size = sum(len(chunk) for chunk in fmt.writer(stream, []))
    rows = counted[0]
    done.set()
    print(
        f"  local join ({label}) of {n} uploaded rows x demo.gaia_dr3_g10 (by key): {rows} rows ({size / 2**20:.0f} MiB "
        f"BINARY2) in {time.perf_counter() - t0:.1f} s, RSS growth {max(peak[0], rss()) - base:.0f} MiB"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.02, help="emulated MAST round trip, seconds")
    ap.add_argument("--concurrency", type=int, default=8, help="the mast archive's max_concurrency")
    ap.add_argument("--quick", action="store_true", help="50 targets, no STILTS parallel=1 (CI smoke)")
    args = ap.parse_args(argv)
    n = 50 if args.quick else args.targets
    import yaml
    from astropy.table import Table
    from emulators.mast import synthetic

    from gateway.testing import make_app, start_process

    mean = synthetic("panstarrs/dr2/mean", extra_fields=[F])
    ids, ra, dec = (np.asarray(mean[c]) for c in ("objID", "raMean", "decMean"))
    rng = np.random.default_rng(3)
    near = np.flatnonzero(np.hypot((ra - F[0]) * np.cos(np.radians(F[1])), dec - F[1]) < 0.5)
    pick = rng.choice(near, n, replace=len(near) < n)
    targets = (np.arange(n), ra[pick] + rng.normal(0, 0.3 / 3600, n), dec[pick] + rng.normal(0, 0.3 / 3600, n))
    want = truth(targets, ids, ra, dec)

    tmp = Path(tempfile.mkdtemp(prefix="vo-gateway-fed-bench-"))
    emu, emu_url = start_emulator(args.latency)
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["base_dir"] = str(ROOT)
    cfg["cache"] = {"ttl": 0}
    cfg["jobs"] = {"store": f"sqlite:///{tmp}/jobs.sqlite", "results_dir": str(tmp / "results")}
    cfg["limits"] = {"enabled": False}  # the benchmark is the load: no request limits
    cfg["archives"]["mast"] = {
        "kind": "mast",
        "base_url": emu_url + "/api/v0.1",
        "metadata_cache": None,
        "hla_url": None,
        "ps1_images_url": None,
        "max_concurrency": args.concurrency,
    }
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc, url = start_process(tmp / "config.yaml")
    try:
        t = Table({"tid": targets[0], "ra": targets[1], "dec": targets[2]})
        buf = io.BytesIO()
        t.write(buf, format="votable", tabledata_format="binary2")
        src = tmp / "targets.fits"
        t.write(src)
        q = (
            "SELECT u.tid, m.objID FROM TAP_UPLOAD.t AS u JOIN mast_ps1dr2.mean AS m "
            f"ON 1 = CONTAINS(POINT('ICRS', m.raMean, m.decMean), CIRCLE('ICRS', u.ra, u.dec, {RADIUS!r}))"
        )
        floor = emulator_floor(emu_url, targets, args.concurrency)
        print(
            f"{n} targets x mast_ps1dr2.mean (MAST emulator, {args.latency * 1000:.0f} ms per request, "
            f"planner max_concurrency {args.concurrency}); match radius 1.5 arcsec; {len(want)} true pairs"
        )
        data = {"LANG": "ADQL", "QUERY": q, "UPLOAD": "t,param:t", "MAXREC": str(10 * n + 100), "RESPONSEFORMAT": "csv"}
        t0 = time.perf_counter()
        r = requests.post(
            url + "/tap/sync", data=data, files={"t": ("t.xml", buf.getvalue())}, stream=True, timeout=3600
        )
        chunks = r.iter_content(65536)
        first = next(chunks, b"")
        t_first = time.perf_counter() - t0
        body = first + b"".join(chunks)
        t_fed = time.perf_counter() - t0
        got = {(int(a), int(b)) for a, b in (line.split(",") for line in body.decode().splitlines()[1:] if line)}
        print(
            f"  gateway planner (one sync TAP_UPLOAD query): {t_fed:8.2f} s   first byte {t_first:6.2f} s   "
            f"pairs {len(got)} {'= truth' if got == want else 'DIFFER from truth'}"
        )
        from gateway.archive import Cone
        from gateway.config import PlannerConfig
        from gateway.sky import covering_cones

        cones = [Cone(float(a), float(d), RADIUS) for a, d in zip(targets[1], targets[2])]
        k = len(covering_cones(cones, PlannerConfig().cone_group_size))
        print(
            f"  one cone request per target straight to the emulator, {args.concurrency} threads: {floor:8.2f} s   "
            f"(the planner sends {k} covering cones instead of {n}; planner / floor {t_fed / floor:.2f}x)"
        )
        peers = []
        stilts = shutil.which("stilts")
        for parallel in [5] if args.quick else [1, 5]:  # 5: the most STILTS allows
            if stilts is None:
                print("  stilts coneskymatch: skipped (no stilts)")
                break
            out = tmp / f"cone{parallel}.csv"
            t0 = time.perf_counter()
            p = subprocess.run(
                [
                    stilts,
                    "coneskymatch",
                    f"in={src}",
                    "ra=ra",
                    "dec=dec",
                    f"serviceurl={url}/scs/mast_ps1dr2.mean?",
                    f"sr={RADIUS!r}",
                    "find=all",
                    f"parallel={parallel}",
                    "verb=1",
                    f"out={out}",
                    "ofmt=csv",
                ],
                capture_output=True,
                text=True,
                timeout=3600,
            )
            dt = time.perf_counter() - t0
            if p.returncode != 0:
                print(f"  stilts coneskymatch parallel={parallel}: failed: {p.stderr[-300:]}")
                continue
            res = Table.read(out, format="csv")
            pairs = {(int(a), int(b)) for a, b in zip(res["tid"], res["objID"])}
            peers.append((parallel, dt))
            print(
                f"  stilts coneskymatch via /scs, parallel={parallel}:  {dt:8.2f} s   ratio to the gateway "
                f"{dt / t_fed:5.2f}x   pairs {len(pairs)} {'= truth' if pairs == want else 'DIFFER from truth'}"
            )
        print(f"  gateway peak RSS (master + workers): {peak_rss_mib(proc.pid):.0f} MiB")
        # the planner's own cost: analysis and planning of a two-archive query, nothing fetched
        app = make_app(cfg, load_entrypoints=True, base_dir=ROOT)
        gw = app.extensions["vo_gateway"]
        fed_q = (
            "SELECT g.source_id, m.objID FROM demo.gaia_dr3_g10 AS g JOIN mast_ps1dr2.mean AS m "
            "ON DISTANCE(POINT('ICRS', g.ra, g.dec), POINT('ICRS', m.raMean, m.decMean)) < 0.0005 "
            "WHERE 1 = CONTAINS(POINT('ICRS', g.ra, g.dec), CIRCLE('ICRS', 33.6, -0.7, 0.5)) AND g.phot_g_mean_mag < 9"
        )
        one_q = "SELECT TOP 10 source_id FROM demo.gaia_dr3_g10 WHERE phot_g_mean_mag < 9"
        reps = 20 if args.quick else 200
        for label, text in (("single-archive (whole query pushed down)", one_q), ("two archives (planned)", fed_q)):
            gw.queries.explain(text)
            t0 = time.perf_counter()
            for _ in range(reps):
                gw.queries.explain(text)
            print(f"  analysis + planning, {label}: {(time.perf_counter() - t0) / reps * 1000:6.2f} ms per query")
        first_byte_after_fetch(app, gw)
        for label in ("cold", "warm"):
            local_join(gw, 100_000 if args.quick else 1_000_000, label)
        gw.jobs.close()
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        emu.terminate()
        emu.wait(30)

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
