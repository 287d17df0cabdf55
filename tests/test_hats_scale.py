"""Kind ``hats`` at scale (slow): a generated 10^7-row catalogue built with hats-import, cones at
the poles and across RA 0/360 over it and a Gaia x generated crossmatch, equal to numpy; and
the same gateway on a Dask cluster (``dask scheduler`` and two ``dask worker`` processes on
loopback) giving the same rows as in-process, with both workers doing the work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from hats_data import GAIA, gaia, generated
from test_hats import _pairs

from gateway.sky import separation
from gateway.testing import free_port, make_app, parse_votable

pytestmark = pytest.mark.slow
BIG = 10_000_000


def config(tmp, n, **extra):
    return {
        "archives": {
            "sky": {
                "kind": "hats",
                "adql_schema": "hats",
                "catalogs": [
                    {"name": "gaia", "path": str(gaia()), "id_column": "source_id"},
                    {"name": "gen", "path": str(generated(n)), "id_column": "obj_id"},
                ],
                **extra,
            }
        },
        "jobs": {"store": f"sqlite:///{tmp}/j.sqlite", "results_dir": str(tmp / "r")},
        "limits": {"enabled": False},
        "service": {"maxrec_default": 10_000_000, "maxrec_hard": 10_000_000},
    }


def run(app, q):
    r = app.test_client().post("/tap/sync", data={"LANG": "ADQL", "QUERY": q, "RESPONSEFORMAT": "votable"})
    t, status, _ = parse_votable(r.data)
    assert r.status_code == 200 and status == "OK", r.data[-500:]
    return t


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    app = make_app(config(tmp_path_factory.mktemp("big"), BIG), load_entrypoints=True)
    src = pq.read_table(generated(BIG).parent / f"gen_{BIG}_20.parquet")
    yield app, {n: src.column(n).to_numpy() for n in src.column_names}
    app.extensions["vo_gateway"].jobs.close()


@pytest.mark.parametrize("ra,dec,r", [(10.0, 89.8, 0.5), (200.0, -89.9, 0.3), (0.02, 30.0, 0.6), (359.99, -45.0, 0.6)])
def test_cones_over_ten_million_rows(big, ra, dec, r):
    app, src = big
    t = run(
        app, f"SELECT obj_id FROM hats.gen WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, {r}))"
    )
    want = src["obj_id"][separation(src["ra"], src["dec"], ra, dec) <= r]
    assert len(want) > 20 and sorted(map(int, t["obj_id"])) == sorted(map(int, want))


def test_gaia_crossmatch_with_ten_million_rows(big):
    app, src = big
    t = run(
        app,
        "SELECT g.source_id, x.obj_id FROM hats.gaia AS g JOIN hats.gen AS x "
        "ON 1 = CONTAINS(POINT('ICRS', x.ra, x.dec), CIRCLE('ICRS', g.ra, g.dec, 1.0/3600))",
    )
    g = pq.read_table(GAIA)
    gra, gdec, gid = (g.column(n).to_numpy() for n in ("ra", "dec", "source_id"))
    i, j = _pairs(gra, gdec, src["ra"], src["dec"], 1 / 3600)
    want = sorted(zip(gid[i].tolist(), src["obj_id"][j].tolist()))
    assert len(want) > 1_000_000 and sorted(zip(t["source_id"].tolist(), t["obj_id"].tolist())) == want


@pytest.fixture(scope="module")
def cluster():
    port = free_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    bin_dir = os.path.dirname(sys.executable)
    procs = [
        subprocess.Popen(
            [os.path.join(bin_dir, "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    ]
    address = f"tcp://127.0.0.1:{port}"
    for _ in range(2):
        procs.append(
            subprocess.Popen(
                [os.path.join(bin_dir, "dask"), "worker", address, "--nthreads", "1", "--no-dashboard"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        )
    from distributed import Client

    with Client(address, timeout=60) as c:
        c.wait_for_workers(2, timeout=120)
    yield address
    for p in procs:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        p.wait(timeout=30)


def test_a_dask_cluster_gives_the_same_rows(cluster, tmp_path):
    """Reads over more than ``dask_partitions`` partitions and the crossmatch run on the
    scheduler's two workers (separate processes); the rows equal the in-process run's."""
    from distributed import Client, get_task_stream

    local = make_app(config(tmp_path / "local", 200_000), load_entrypoints=True)
    remote = make_app(
        config(tmp_path / "remote", 200_000, dask_scheduler=cluster, dask_partitions=1), load_entrypoints=True
    )
    queries = [
        "SELECT source_id, ra, dec FROM hats.gaia WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 120, 30, 40))",
        "SELECT g.source_id, x.obj_id FROM hats.gaia AS g JOIN hats.gen AS x "
        "ON 1 = CONTAINS(POINT('ICRS', x.ra, x.dec), CIRCLE('ICRS', g.ra, g.dec, 1.0/3600))",
    ]
    try:
        with Client(cluster, timeout=60) as watcher, get_task_stream(client=watcher) as stream:
            for q in queries:
                a, b = run(local, q), run(remote, q)
                assert len(a) > 1000
                assert sorted(map(tuple, a.as_array().tolist())) == sorted(map(tuple, b.as_array().tolist()))
        workers = {t["worker"] for t in stream.data}
        assert len(workers) == 2, workers  # both worker processes read partitions
    finally:
        for app in (local, remote):
            app.extensions["vo_gateway"].jobs.close()
