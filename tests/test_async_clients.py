"""Async TAP and uploads through real clients against a live gateway (gunicorn gthread):
pyvo, astroquery TapPlus, STILTS tapquery/tapskymatch (TAP 1.1 §2.2, UWS 1.1, CLIENTS.md §5, §7, §8)."""

import subprocess

import numpy as np
import pytest
import requests
from astropy.table import Table
from conftest import needs_stilts


def test_pyvo_run_async_and_job_lifecycle(live_url):
    import pyvo

    tap = pyvo.dal.TAPService(live_url + "/tap")
    res = tap.run_async("SELECT TOP 5 source_id, phot_g_mean_mag FROM demo.gaia_dr3_g10 ORDER BY phot_g_mean_mag")
    mags = list(res.to_table()["phot_g_mean_mag"])
    assert len(mags) == 5 and mags == sorted(mags)
    job = tap.submit_job("SELECT TOP 12 id FROM demo.s82_rrlyrae", maxrec=10)
    assert job.phase == "PENDING"
    job.run()
    job.wait(phases=["COMPLETED", "ERROR", "ABORTED"], timeout=60)
    assert job.phase == "COMPLETED"
    t = job.fetch_result()
    assert len(t) == 10 and t.query_status == "OVERFLOW"
    listed = tap.get_job_list(phases=["COMPLETED"], last=5)
    assert job.job_id in [j.jobid for j in listed]
    url = job.url
    job.delete()
    assert requests.get(url).status_code == 404
    bad = tap.submit_job("SELECT nosuch FROM demo.s82_rrlyrae")
    bad.run().wait(phases=["COMPLETED", "ERROR", "ABORTED"], timeout=60)
    with pytest.raises(pyvo.dal.DALQueryError, match="nosuch"):
        bad.raise_if_error()
    bad.delete()


def test_pyvo_uploads_astropy_table_sync_and_async(live_url):
    import pyvo

    tap = pyvo.dal.TAPService(live_url + "/tap")
    seed = tap.run_sync("SELECT TOP 3 source_id, ra, dec FROM demo.gaia_dr3_g10 ORDER BY source_id").to_table()
    mine = Table({"myid": np.array([1, 2, 3], np.int32), "ra": seed["ra"], "dec": seed["dec"]})
    q = (
        "SELECT m.myid, g.source_id FROM TAP_UPLOAD.mine AS m JOIN demo.gaia_dr3_g10 AS g "
        "ON 1 = CONTAINS(POINT('ICRS', g.ra, g.dec), CIRCLE('ICRS', m.ra, m.dec, 0.5/3600)) ORDER BY m.myid"
    )
    for run in (tap.run_sync, tap.run_async):
        t = run(q, uploads={"mine": mine}).to_table()
        assert list(t["myid"]) == [1, 2, 3] and list(t["source_id"]) == list(seed["source_id"])


def test_astroquery_launch_job_async(live_url):
    from astroquery.utils.tap.core import TapPlus

    tap = TapPlus(url=live_url + "/tap", verbose=False)
    job = tap.launch_job_async("SELECT TOP 3 id, period FROM demo.s82_rrlyrae ORDER BY period", verbose=False)
    t = job.get_results()
    assert len(t) == 3 and list(t["period"]) == sorted(t["period"])


@needs_stilts
def test_stilts_tapquery_async_with_upload(live_url, tmp_path):
    csv = tmp_path / "in.csv"
    rows = requests.get(
        live_url + "/tap/sync",
        params={"LANG": "ADQL", "FORMAT": "csv", "QUERY": "SELECT TOP 3 id, ra, dec FROM demo.s82_rrlyrae ORDER BY id"},
    ).text.splitlines()[1:]
    csv.write_text(
        "label,ra,dec\n" + "".join(f"s{i},{r.split(',')[1]},{r.split(',')[2]}\n" for i, r in enumerate(rows))
    )
    q = (
        "SELECT u.label, s.id FROM TAP_UPLOAD.mine AS u JOIN demo.s82_rrlyrae AS s "
        "ON 1=CONTAINS(POINT('ICRS', s.ra, s.dec), CIRCLE('ICRS', u.ra, u.dec, 0.0003)) ORDER BY u.label"
    )
    out = subprocess.run(
        [
            "stilts",
            "tapquery",
            f"tapurl={live_url}/tap",
            "nupload=1",
            f"upload1={csv}",
            "ufmt1=csv",
            "upname1=mine",
            f"adql={q}",
            "sync=false",
            "progress=true",
            "ofmt=csv",
            "delete=always",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "COMPLETED" in out.stderr and "DELETED" in out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "label,id" and [line.split(",")[1] for line in lines[1:]] == [r.split(",")[0] for r in rows]


@needs_stilts
def test_stilts_tapskymatch_against_gaia(live_url, tmp_path):
    seed = requests.get(
        live_url + "/tap/sync",
        params={
            "LANG": "ADQL",
            "FORMAT": "csv",
            "QUERY": "SELECT TOP 4 source_id, ra, dec FROM demo.gaia_dr3_g10 ORDER BY source_id",
        },
    ).text.splitlines()[1:]
    inp = tmp_path / "in.csv"
    inp.write_text(
        "ra,dec,label\n"
        + "".join(f"{r.split(',')[1]},{r.split(',')[2]},p{i}\n" for i, r in enumerate(seed))
        + "50.0,50.0,nomatch\n"
    )
    out = subprocess.run(
        [
            "stilts",
            "tapskymatch",
            f"in={inp}",
            "ifmt=csv",
            "inlon=ra",
            "inlat=dec",
            f"tapurl={live_url}/tap",
            "taptable=demo.gaia_dr3_g10",
            "taplon=ra",
            "taplat=dec",
            "sr=0.0003",
            "find=best",
            "ofmt=csv",
            "tapcols=source_id,phot_g_mean_mag",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    t = Table.read(out.stdout, format="ascii.csv")
    assert sorted(t["label"]) == ["p0", "p1", "p2", "p3"]
    assert sorted(t["source_id"]) == sorted(int(r.split(",")[0]) for r in seed)
