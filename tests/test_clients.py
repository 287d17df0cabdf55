"""Real clients against a live ``vo-gateway serve`` (gunicorn gthread) process:
pyvo, astroquery TapPlus, STILTS taplint/votlint/tapquery/cone, astropy's validator."""

import io
import json
import subprocess
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest
import requests
from astropy.io import fits
from astropy.wcs import WCS

from gateway.testing import ALL_TAPLINT_STAGES, parse_votable, taplint, votlint
from tests.conftest import ROOT, needs_stilts

warnings.filterwarnings("ignore")


def test_pyvo_tap(live_url):
    import pyvo

    tap = pyvo.dal.TAPService(live_url + "/tap")
    r = tap.run_sync("SELECT TOP 5 source_id, ra, dec FROM demo.gaia_dr3_g10 ORDER BY phot_g_mean_mag")
    assert len(r) == 5 and r.query_status == "OK"
    r = tap.run_sync("SELECT source_id FROM demo.gaia_dr3_g10", maxrec=3)
    assert len(r) == 3 and r.query_status == "OVERFLOW"
    assert tap.maxrec == 20000 and tap.hardlimit == 10000000
    names = {t.name for t in tap.tables}
    assert {"demo.gaia_dr3_g10", "demo.sdss_stars", "TAP_SCHEMA.columns"} <= names
    assert tap.tables["demo.sdss_stars"].columns[0].name == "objid"
    assert tap.available
    for ex in tap.examples:  # every published example runs
        ex.execute()
    with pytest.raises(pyvo.dal.DALQueryError, match="does not exist"):
        tap.run_sync("SELECT nosuch FROM demo.gaia_dr3_g10")


def test_pyvo_scs_against_astropy(live_url):
    import pyvo
    from astropy.coordinates import SkyCoord

    ra0, dec0, r = 200.45, 36.8, 0.05
    res = pyvo.dal.SCSService(live_url + "/scs/demo.sdss_stars").search(pos=(ra0, dec0), radius=r, verbosity=3)
    ref = pq.read_table(ROOT / "data/demo/sdss_stars.parquet").to_pandas()
    sep = SkyCoord(ref.ra, ref.dec, unit="deg").separation(SkyCoord(ra0, dec0, unit="deg")).deg
    expected = sorted(str(x) for x in ref.objid[sep <= r])
    got = sorted(str(x) for x in res.to_table()["objid"])
    assert got == expected and len(got) > 5
    t = res.votable.get_first_table()
    ucds = {f.ucd for f in t.fields}
    assert {"ID_MAIN", "POS_EQ_RA_MAIN", "POS_EQ_DEC_MAIN"} <= ucds


def test_scs_errors_and_metadata(live_url):
    r = requests.get(live_url + "/scs/demo.gaia_dr3_g10", params={"RA": 10, "DEC": 91, "SR": 1})
    assert r.status_code == 400 and 'name="Error"' in r.text and "DEC" in r.text
    r = requests.get(live_url + "/scs/demo.gaia_dr3_g10", params={"RA": 10, "DEC": 10, "SR": 0})
    from astropy.io.votable import parse_single_table  # SCS 1.03 UCD1 names are not UCD1+: no strict parse

    t = parse_single_table(io.BytesIO(r.content), verify="ignore").to_table()
    assert len(t) == 0 and "source_id" in t.colnames


def test_pyvo_sia1_sia2_datalink_soda(live_url):
    import pyvo
    from pyvo.dal.adhoc import SodaQuery

    r1 = pyvo.dal.SIAService(live_url + "/sia1").search(pos=(200.45, 36.8), size=0.05, format="image/fits")
    assert len(r1) == 5
    data = r1[0].getdataset().read()
    assert fits.open(io.BytesIO(data))[0].header["NAXIS1"] == 2048
    sia2 = pyvo.dal.SIA2Service(live_url + "/sia")
    res = sia2.search(pos=(200.45, 36.8, 0.05), band=(5.6e-7, 6.9e-7))
    assert [r["obs_id"] for r in res] == ["frame-r-004510-4-0030"]
    # the SIA 2.0 access_url downloads the image, the same file as SIA 1.0 gives (issue 19)
    got = requests.get(res[0]["access_url"])  # pyvo's getdataset() asks the IVOA vocabulary server first
    assert got.status_code == 200 and got.headers["Content-Type"].startswith("image/fits")
    direct = got.content
    assert fits.open(io.BytesIO(direct))[0].header["FILTER"].strip() == "r"
    assert direct == next(r.getdataset().read() for r in r1 if r.title == "frame-r-004510-4-0030")
    assert len(sia2.search(pos=(10, 10, 0.05))) == 0
    from astropy.time import Time

    run = (Time(53081.3, format="mjd"), Time(53081.4, format="mjd"))  # the 2004-03-17 run
    assert len(sia2.search(pos=(200.45, 36.8, 0.05), time=run)) == 5
    dl = res[0].getdatalink()
    assert [x.semantics for x in dl] == ["#this", "#cutout"]
    sq = SodaQuery.from_resource(dl[1], dl.get_adhocservice_by_id("soda"))
    sq.circle = (200.45, 36.8, 0.01)
    hdu = fits.open(io.BytesIO(sq.execute_stream().read()))[0]
    w = WCS(hdu.header)
    ny, nx = hdu.data.shape
    ra, dec = w.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2)
    assert abs(ra - 200.45) * np.cos(np.radians(36.8)) < 0.3 / 3600 * 2 and abs(dec - 36.8) < 0.3 / 3600 * 2
    assert 2 * 0.01 * 3600 / 0.396 <= nx <= 2 * 0.01 * 3600 / 0.396 + 4
    # the cutout's pixels equal the full image's pixels at the same sky position
    full = fits.open(io.BytesIO(requests.get(dl[0].access_url).content))[0]
    fx, fy = WCS(full.header).world_to_pixel_values(ra, dec)
    assert full.data[int(round(float(fy))), int(round(float(fx)))] == hdu.data[
        (ny - 1) // 2, (nx - 1) // 2
    ] or np.isclose(full.data[int(round(float(fy))), int(round(float(fx)))], hdu.data[ny // 2, nx // 2])


def test_soda_errors(live_url):
    did = "ivo://vo-gateway/demo?frame-r-004510-4-0030"
    r = requests.get(live_url + "/soda/sync", params={"ID": did, "CIRCLE": "10 10 0.01"})
    assert r.status_code == 204 and r.content == b""
    r = requests.get(live_url + "/soda/sync", params={"ID": "nosuch", "CIRCLE": "10 10 0.01"})
    assert (
        r.status_code == 404 and r.text.startswith("UsageError") and r.headers["Content-Type"].startswith("text/plain")
    )
    r = requests.get(live_url + "/soda/sync", params={"ID": did, "POS": "CIRCLE 10 100 1"})
    assert r.status_code == 400 and r.text.startswith("UsageError")
    r = requests.get(live_url + "/soda/sync", params={"ID": did, "POS": "RANGE 200.4 200.5 36.75 36.85"})
    assert r.status_code == 200 and fits.open(io.BytesIO(r.content))[0].data.size > 0


def test_astroquery_tapplus(live_url):
    from astroquery.utils.tap.core import TapPlus

    tap = TapPlus(url=live_url + "/tap", verbose=False)
    job = tap.launch_job("SELECT TOP 4 id, period FROM demo.s82_rrlyrae ORDER BY period DESC")
    t = job.get_results()
    assert len(t) == 4 and list(t["period"]) == sorted(t["period"], reverse=True)


@needs_stilts
def test_taplint_clean(live_url, tmp_path):
    bad, doc = taplint(live_url + "/tap")
    (tmp_path / "taplint.json").write_text(json.dumps(doc))
    assert bad == []
    assert {s["code"] for s in doc["sections"]} == set(ALL_TAPLINT_STAGES.split())
    assert doc["totals"].get("ERROR", 0) == 0 and doc["totals"].get("FAILURE", 0) == 0


@needs_stilts
@pytest.mark.parametrize("fmt", ["votable/td", "votable/b", "votable"])
def test_votlint_and_astropy_validator(live_url, tmp_path, fmt):
    from astropy.io.votable import validate

    q = (
        "SELECT TOP 200 s.*, e.mjd, e.mag, POINT(s.ra, s.dec) AS pos FROM demo.s82_rrlyrae AS s "
        "JOIN demo.s82_rrlyrae_epochs AS e ON e.id = s.id"
    )
    r = requests.get(live_url + "/tap/sync", params={"LANG": "ADQL", "QUERY": q, "RESPONSEFORMAT": fmt, "MAXREC": 100})
    assert votlint(r.content, tmp_path) == []
    f = tmp_path / "votlint.vot"
    buf = io.StringIO()
    assert validate(str(f), output=buf), buf.getvalue()


@needs_stilts
def test_stilts_tapquery_and_cone(live_url):
    out = subprocess.run(
        [
            "stilts",
            "tapquery",
            f"tapurl={live_url}/tap",
            "sync=true",
            "ofmt=csv",
            "adql=SELECT TOP 3 source_id, phot_g_mean_mag FROM demo.gaia_dr3_g10 ORDER BY phot_g_mean_mag",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == 4
    out = subprocess.run(
        [
            "stilts",
            "cone",
            f"serviceurl={live_url}/scs/demo.sdss_stars",
            "lon=200.45",
            "lat=36.8",
            "radius=0.05",
            "omode=count",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "rows:" in out.stdout and int(out.stdout.split("rows:")[1].split()[0]) > 5


@needs_stilts
def test_stilts_reads_streamed_fits(live_url, tmp_path):
    """The streamed FITS (header from the row count, rows batch by batch) is read by STILTS,
    TOPCAT's table library, with the values and nulls of the same query as VOTable."""
    q = (
        "SELECT TOP 40000 source_id, ra, phot_bp_mean_mag, POINT(ra, dec) AS pos FROM demo.gaia_dr3_g10 "
        "ORDER BY source_id"
    )
    params = {"LANG": "ADQL", "QUERY": q, "MAXREC": 30000}
    f = tmp_path / "r.fits"
    f.write_bytes(requests.get(live_url + "/tap/sync", params={**params, "RESPONSEFORMAT": "fits"}).content)
    out = subprocess.run(
        ["stilts", "tpipe", f"in={f}", "ifmt=fits", "cmd=keepcols 'source_id ra phot_bp_mean_mag'", "ofmt=csv"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    from astropy.table import Table

    got = Table.read(out.stdout, format="ascii.csv")
    ref, status, _ = parse_votable(requests.get(live_url + "/tap/sync", params=params).content)
    assert status == "OVERFLOW" and len(got) == len(ref) == 30000
    assert list(got["source_id"]) == list(ref["source_id"]) and np.array_equal(got["ra"], ref["ra"])
    bp_ref = np.ma.filled(ref["phot_bp_mean_mag"].astype(float), np.nan)
    bp = np.ma.filled(got["phot_bp_mean_mag"].astype(float), np.nan)
    assert np.isnan(bp_ref).any() and np.array_equal(np.isnan(bp), np.isnan(bp_ref))
    assert np.allclose(bp, bp_ref, rtol=1e-6, atol=0, equal_nan=True)
