"""Kind ``hats`` (plugins/hats) over HATS catalogues that hats-import builds from the embedded
Gaia table (482,176 rows) and from a generated catalogue (tests/hats_data.py).  Every row set is
compared with a ground truth computed with numpy/scipy over the source Parquet files: cones at
the poles and across RA 0/360, boxes and polygons, a Gaia x generated crossmatch and an upload
crossmatch; partitions read are counted against the HEALPix cells a cone touches (mocpy)."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ROOT
from hats_data import GAIA, gaia, generated, generated_table
from scipy.spatial import cKDTree

from gateway.config import ConfigError
from gateway.sky import separation
from gateway.testing import make_app, parse_votable, serve

N_GEN = 200_000


def hats_config(tmp, **extra):
    archive = {
        "kind": "hats",
        "adql_schema": "hats",
        "catalogs": [
            {
                "name": "gaia",
                "path": str(gaia()),
                "id_column": "source_id",
                "metadata": str(ROOT / "data/demo/gaia_dr3_g10.yaml"),
                "description": "Gaia DR3 G < 10",
            },
            {"name": "gen", "path": str(generated(N_GEN)), "id_column": "obj_id"},
        ],
        **extra,
    }
    return {
        "archives": {"sky": archive},
        "jobs": {"store": f"sqlite:///{tmp}/j.sqlite", "results_dir": str(tmp / "r"), "heartbeat": 0.2},
        "limits": {"enabled": False},
        "service": {"maxrec_default": 1_000_000},
    }


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = make_app(hats_config(tmp_path_factory.mktemp("hats")), load_entrypoints=True)
    yield a
    a.extensions["vo_gateway"].jobs.close()


@pytest.fixture(scope="module")
def truth():
    g = pq.read_table(GAIA)
    return {n: g.column(n).to_numpy() for n in g.column_names}


def run(app, q, **extra):
    r = app.test_client().post("/tap/sync", data={"LANG": "ADQL", "QUERY": q, **extra})
    table, status, _ = parse_votable(r.data)
    return r, table, status


def archive(app):
    return app.extensions["vo_gateway"].catalogue.archives["sky"]


def test_metadata_from_the_catalogue(app):
    """Names and types from the Parquet schema, units/UCDs/descriptions from the metadata file,
    positions from hats.properties; the spatial index column is not offered."""
    r, t, status = run(
        app, "SELECT column_name, datatype, unit, ucd FROM TAP_SCHEMA.columns WHERE table_name = 'hats.gaia'"
    )
    cols = {
        str(n): (str(d), str(u), str(q)) for n, d, u, q in zip(t["column_name"], t["datatype"], t["unit"], t["ucd"])
    }
    schema = pq.read_schema(GAIA)
    assert status == "OK" and set(cols) == set(schema.names)
    assert cols["source_id"][0] == "long" and cols["ra"] == ("double", "deg", "pos.eq.ra;meta.main")
    assert cols["phot_g_mean_mag"] == ("float", "mag", "phot.mag;em.opt")
    tables = archive(app).tables()
    assert (tables[0].ra_column, tables[0].dec_column, tables[0].nrows) == ("ra", "dec", 482_176)


CONES = [(0.3, 89.7, 1.5), (180.0, -89.5, 2.0), (0.05, 1.0, 1.0), (359.95, -3.0, 1.2), (83.82, -5.39, 1 / 60)]


@pytest.mark.parametrize("ra,dec,r", CONES)
def test_cones_equal_numpy(app, truth, ra, dec, r):
    """Cones at both poles, across RA 0/360, and a 1' cone: the rows are numpy's."""
    q = f"SELECT source_id FROM hats.gaia WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, {r}))"
    _, t, status = run(app, q)
    want = truth["source_id"][separation(truth["ra"], truth["dec"], ra, dec) <= r]
    assert status == "OK" and sorted(map(int, t["source_id"])) == sorted(map(int, want))


def test_boxes_polygons_and_conditions(app, truth):
    """A BOX across RA 0 with a magnitude cut and a polygon: numpy's rows (a box's sides are
    great circles: a row is inside when it is on the inner side of all four)."""
    _, t, status = run(
        app,
        "SELECT source_id FROM hats.gaia WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), BOX('ICRS', 0.5, 10, 6, 4)) "
        "AND phot_g_mean_mag BETWEEN 7 AND 9",
    )

    def vec(a, d):
        a, d = np.radians(a), np.radians(d)
        return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)

    corners = [(-2.5, 8), (3.5, 8), (3.5, 12), (-2.5, 12)]
    v = [vec(a, d) for a, d in corners]
    p = vec(truth["ra"], truth["dec"])
    inside = np.ones(len(p), bool)
    for i in range(4):
        n = np.cross(v[i], v[(i + 1) % 4])
        inside &= p @ n >= 0
    mag = truth["phot_g_mean_mag"]
    want = truth["source_id"][inside & (mag >= 7) & (mag <= 9)]
    assert status == "OK" and len(want) > 10 and sorted(map(int, t["source_id"])) == sorted(map(int, want))


def test_only_the_touched_partitions_are_read(app):
    """A 1' cone reads the partitions whose HEALPix cells meet the cone (mocpy), not the 48."""
    from astropy import units as u
    from astropy.coordinates import Angle, Latitude, Longitude
    from mocpy import MOC

    cat = archive(app).catalogs["gaia"]
    total = len(cat.partitions())
    cone = MOC.from_cone(
        lon=Longitude(83.82 * u.deg), lat=Latitude(-5.39 * u.deg), radius=Angle(1 / 60 * u.deg), max_depth=12
    )
    meets = sum(
        1
        for p in cat.partitions()
        if MOC.from_healpix_cells(
            ipix=np.array([p.pixel], dtype=np.uint64), depth=np.array([p.order], dtype=np.uint8), max_depth=p.order
        )
        .intersection(cone)
        .sky_fraction
        > 0
    )
    before = cat.partitions_read
    run(
        app,
        "SELECT source_id FROM hats.gaia WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 83.82, -5.39, 0.0166667))",
    )
    assert cat.partitions_read - before == meets == 1 and total == 48


def test_id_lookups_read_only_the_partitions_the_index_names(app, truth):
    """``source_id IN (...)`` goes through the collection's index catalogue: the rows equal
    numpy's, and only the partitions whose HEALPix cells hold those stars (mocpy) are read."""
    from astropy import units as u
    from mocpy import MOC

    cat = archive(app).catalogs["gaia"]
    assert "source_id" in cat.indexes
    pick = np.array([5, 200_000, 481_000])
    ids = [int(v) for v in truth["source_id"][pick]] + [1]  # 1: no such star
    holding = {
        (p.order, p.pixel)
        for p in cat.partitions()
        if MOC.from_healpix_cells(
            ipix=np.array([p.pixel], dtype=np.uint64), depth=np.array([p.order], dtype=np.uint8), max_depth=p.order
        )
        .contains_lonlat(truth["ra"][pick] * u.deg, truth["dec"][pick] * u.deg)
        .any()
    }
    before = cat.partitions_read
    _, t, status = run(app, f"SELECT source_id, ra FROM hats.gaia WHERE source_id IN ({', '.join(map(str, ids))})")
    assert status == "OK" and sorted(map(int, t["source_id"])) == sorted(ids[:3])
    assert np.allclose(sorted(t["ra"]), sorted(truth["ra"][pick]))
    assert 1 <= len(holding) <= 3 and cat.partitions_read - before == len(holding)


def _pairs(a_ra, a_dec, b_ra, b_dec, r):
    def vec(ra, dec):
        ra, dec = np.radians(ra), np.radians(dec)
        return np.c_[np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)]

    m = cKDTree(vec(a_ra, a_dec)).sparse_distance_matrix(
        cKDTree(vec(b_ra, b_dec)), 2 * np.sin(np.radians(1.5 * r) / 2), output_type="ndarray"
    )
    i, j = m["i"], m["j"]
    keep = separation(a_ra[i], a_dec[i], b_ra[j], b_dec[j]) <= r
    return i[keep], j[keep]


def test_crossmatch_of_two_catalogues(app, truth):
    """Gaia x generated within 1": LSDB's margin-aware crossmatch finds every pair numpy finds
    (scipy k-d tree over the Parquet sources, exact separations), across partition edges."""
    q = (
        "SELECT g.source_id, x.obj_id, DISTANCE(POINT('ICRS', g.ra, g.dec), POINT('ICRS', x.ra, x.dec)) AS d "
        "FROM hats.gaia AS g JOIN hats.gen AS x ON 1 = CONTAINS(POINT('ICRS', x.ra, x.dec), CIRCLE('ICRS', g.ra, g.dec, 1.0/3600))"
    )
    _, t, status = run(app, q)
    x = generated_table(N_GEN)
    xr, xd, xid = (x.column(n).to_numpy() for n in ("ra", "dec", "obj_id"))
    i, j = _pairs(truth["ra"], truth["dec"], xr, xd, 1 / 3600)
    want = sorted(zip(truth["source_id"][i].tolist(), xid[j].tolist()))
    assert status == "OK" and len(want) > 30_000
    assert sorted(zip(map(int, t["source_id"]), map(int, t["obj_id"]))) == want
    assert float(np.max(t["d"])) <= 1 / 3600


def test_upload_crossmatch(app, truth):
    """A 2,000-row upload x Gaia within 2" (pyvo, TAP_UPLOAD): numpy's pairs."""
    import pyvo
    from astropy.table import Table

    x = generated_table(N_GEN).slice(0, 2000)
    mine = Table(
        {"tid": x.column("obj_id").to_numpy(), "ra": x.column("ra").to_numpy(), "dec": x.column("dec").to_numpy()}
    )
    with serve(app) as url:
        res = (
            pyvo.dal.TAPService(url + "/tap")
            .run_sync(
                "SELECT u.tid, g.source_id FROM TAP_UPLOAD.mine AS u JOIN hats.gaia AS g "
                "ON DISTANCE(POINT('ICRS', u.ra, u.dec), POINT('ICRS', g.ra, g.dec)) < 2.0/3600",
                uploads={"mine": mine},
                maxrec=100_000,
            )
            .to_table()
        )
    i, j = _pairs(np.asarray(mine["ra"]), np.asarray(mine["dec"]), truth["ra"], truth["dec"], 2 / 3600)
    want = sorted(zip(np.asarray(mine["tid"])[i].tolist(), truth["source_id"][j].tolist()))
    assert len(want) > 300 and sorted(zip(map(int, res["tid"]), map(int, res["source_id"]))) == want


def test_scs_and_async_progress(app, truth):
    """SCS with pyvo equals numpy; an async crossmatch reports its partitions in jobInfo."""
    import pyvo

    with serve(app) as url:
        scs = pyvo.dal.SCSService(url + "/scs/hats.gaia").search(pos=(10.0, 41.0), radius=1.0).to_table()
        want = truth["source_id"][separation(truth["ra"], truth["dec"], 10.0, 41.0) <= 1.0]
        assert sorted(map(int, scs["source_id"])) == sorted(map(int, want))
        job = pyvo.dal.TAPService(url + "/tap").submit_job(
            "SELECT COUNT(*) AS n FROM hats.gaia AS g JOIN hats.gen AS x "
            "ON 1 = CONTAINS(POINT('ICRS', x.ra, x.dec), CIRCLE('ICRS', g.ra, g.dec, 1.0/3600))"
        )
        job.run().wait(timeout=300)
        assert job.phase == "COMPLETED"
        import requests

        doc = requests.get(job.url).text
        assert "partitions_done" in doc and job.fetch_result().to_table()["n"][0] > 30_000


def test_served_by_forked_workers(tmp_path, truth):
    """``vo-gateway serve`` builds the app in gunicorn's master and forks its workers: the
    workers answer (the master never compiles numba code, whose lock a fork would leave held)."""
    import os
    import signal

    import requests
    import yaml

    from gateway.testing import start_process

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(hats_config(tmp_path)))
    proc, url = start_process(path, extra_args=("--workers", "2", "--threads", "2"))
    try:
        for _ in range(4):  # both workers, whichever gets the connection
            r = requests.get(f"{url}/scs/hats.gaia", params={"RA": 83.82, "DEC": -5.39, "SR": 0.5}, timeout=120)
            want = np.count_nonzero(separation(truth["ra"], truth["dec"], 83.82, -5.39) <= 0.5)
            from astropy.io.votable import parse_single_table

            table = parse_single_table(io.BytesIO(r.content), verify="ignore").to_table()  # SCS's UCD1 ID_MAIN
            assert r.status_code == 200 and len(table) == want > 10
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_refusals_and_failures(tmp_path):
    """A scan of a catalogue over ``scan_rows`` without a bound is refused with the quote; a
    crossmatch wider than the margin cache is refused; a missing catalogue stops start-up by
    path; a partition that cannot be read fails the query and names the partition."""
    cfg = hats_config(tmp_path, scan_rows=100_000, async_scan_rows=300_000)
    app = make_app(cfg, load_entrypoints=True)
    try:
        r, _, _ = run(app, "SELECT obj_id FROM hats.gen WHERE mag < 13")
        assert r.status_code == 400 and b"hats.gen would be read whole" in r.data and b"an async job may read" in r.data
        assert b"CIRCLE(" in r.data and b"obj_id = ..." in r.data
        r, t, _ = run(app, "SELECT obj_id FROM hats.gen WHERE obj_id IN (5, 17)")
        assert r.status_code == 200 and sorted(map(int, t["obj_id"])) == [5, 17]  # an id bound is a bound
        r, _, _ = run(
            app,
            "SELECT g.source_id FROM hats.gaia AS g JOIN hats.gen AS x ON 1 = CONTAINS(POINT('ICRS', x.ra, x.dec), "
            "CIRCLE('ICRS', g.ra, g.dec, 30.0/3600))",
        )
        assert r.status_code == 400 and b"margin cache of 10 arcsec" in r.data
    finally:
        app.extensions["vo_gateway"].jobs.close()
    bad = hats_config(tmp_path / "b")
    bad["archives"]["sky"]["catalogs"][1]["path"] = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="nowhere"):
        make_app(bad, load_entrypoints=True)
    broken = tmp_path / "broken"
    shutil.copytree(gaia(), broken)
    victim = next((broken / "gaia/dataset").rglob("Npix=20.parquet"))
    victim.write_bytes(b"not parquet")
    cfg = hats_config(tmp_path / "c")
    cfg["archives"]["sky"]["catalogs"] = [{"name": "gaia", "path": str(broken)}]
    app = make_app(cfg, load_entrypoints=True)
    try:
        r, _, status = run(
            app,
            "SELECT source_id FROM hats.gaia WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 83.82, -5.39, 0.5))",
        )
        assert b"partition Norder=1/Npix=20 could not be read" in r.data and (r.status_code >= 500 or status == "ERROR")
    finally:
        app.extensions["vo_gateway"].jobs.close()
