"""Kind ``sdss`` (plugins/sdss) against the SkyServer emulation (tests/emulators/sdss.py): the
seed's photo x spec join with conditions and TOP 10, the PSF magnitude of a star at a position,
the requests as astroquery.sdss sends them, SkyServer's error-in-200 and row cap, refused scans,
exact 64-bit ids, and pyvo's TAP and SCS.  Rows are checked against numpy over the emulator's
own tables."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import ROOT, needs_stilts
from emulators.sdss import sdss_app

from gateway.config import ConfigError
from gateway.sky import separation
from gateway.testing import make_app, parse_votable, serve, taplint

JOIN = (
    "SELECT TOP 10 p.objid, p.ra, p.dec, p.psfmag_r, s.z, s.specobjid\n"
    "FROM sdss_dr17.PhotoObj AS p JOIN sdss_dr17.SpecObj AS s ON s.bestobjid = p.objid\n"
    "WHERE 1 = CONTAINS(POINT('ICRS', p.ra, p.dec), CIRCLE('ICRS', 200.5, 36.85, 0.3)) AND p.psfmag_r < 19\n"
    "ORDER BY p.psfmag_r"
)


def config(base, tmp, **extra):
    return {
        "archives": {"sdss": {"kind": "sdss", "skyserver_url": base, "sas_url": base + "/sas", "timeout": 5, **extra}},
        "jobs": {"store": f"sqlite:///{tmp}/j.sqlite", "results_dir": str(tmp / "r")},
    }


@pytest.fixture(scope="module")
def emu():
    app = sdss_app()
    with serve(app) as base:
        yield app, base


@pytest.fixture(scope="module")
def gw(emu, tmp_path_factory):
    app = make_app(config(emu[1], tmp_path_factory.mktemp("sdss")), load_entrypoints=True)
    with serve(app) as url:
        yield app, url
    app.extensions["vo_gateway"].jobs.close()


def photo(emu_app):
    t = emu_app.config["stars"]
    return {n: t.column(n).to_numpy(zero_copy_only=False) for n in ("objid", "ra", "dec", "psfmag_r", "psfmagerr_r")}


def test_photo_spec_join_top_10(gw, emu):
    """The seed flow: a photometric x spectroscopic join in a cone with a magnitude cut, TOP 10
    by magnitude; the rows are numpy's over the emulator's tables, 64-bit ids exact."""
    import pyvo

    emu_app, _ = emu
    res = pyvo.dal.TAPService(gw[1] + "/tap").run_sync(JOIN).to_table()
    p = photo(emu_app)
    spec = emu_app.config["spectra"]
    spec_of = dict(zip(spec.column("bestObjID").to_pylist(), spec.column("specObjID").to_pylist()))
    inside = (separation(p["ra"], p["dec"], 200.5, 36.85) <= 0.3) & (p["psfmag_r"] < 19)
    rows = [(int(o), m) for o, m, ok in zip(p["objid"], p["psfmag_r"], inside) if ok and int(o) in spec_of]
    rows.sort(key=lambda r: r[1])
    assert [int(v) for v in res["objid"]] == [o for o, _ in rows[:10]]
    assert [str(v) for v in res["specobjid"]] == [spec_of[o] for o, _ in rows[:10]]
    assert max(int(v) for v in spec.column("specObjID").to_pylist()) > 2**63  # the exactness is tested
    assert res["objid"].dtype == np.int64


def test_requests_are_what_astroquery_sends(gw, emu):
    """The seed join goes to SkyServer as one T-SQL statement, the cone as SkyServer's indexed
    fGetNearbyObjEq join; the request is astroquery.sdss's SDSS.query_sql payload for that
    SQL, to the x_results.aspx path of the configured release."""
    from astroquery.sdss import SDSS

    emu_app, _ = emu
    emu_app.config["requests"].clear()
    gw[0].test_client().post("/tap/sync", data={"LANG": "ADQL", "QUERY": JOIN})
    ((release, sent),) = emu_app.config["requests"]
    assert release == "dr17"
    assert sent["cmd"] == (
        "SELECT TOP 10 p.objid, p.ra, p.dec, p.psfmag_r, s.z, s.specobjid "
        "FROM dbo.PhotoObj AS p JOIN dbo.SpecObj AS s ON s.bestobjid = p.objid "
        "JOIN dbo.fGetNearbyObjEq(200.5, 36.85, 18.0) AS n0 ON n0.objID = p.objID "
        "WHERE p.psfmag_r < 19 ORDER BY p.psfmag_r"
    )  # 0.3 deg = 18 arcmin
    expected = SDSS.query_sql(sent["cmd"], get_query_payload=True, data_release=17)
    assert {**expected, "cmd": expected["cmd"].strip()} == sent


def test_psf_magnitude_of_a_star_at_a_position(gw, emu):
    """The PSF magnitude of the star nearest a position, by SCS and by ADQL."""
    import pyvo

    emu_app, _ = emu
    p = photo(emu_app)
    i = 1234
    ra, dec = float(p["ra"][i]) + 0.5 / 3600, float(p["dec"][i])
    scs = pyvo.dal.SCSService(gw[1] + "/scs/sdss_dr17.Star").search(pos=(ra, dec), radius=2 / 3600).to_table()
    assert [int(v) for v in scs["objid"]] == [int(p["objid"][i])]
    assert float(scs["psfmag_r"][0]) == pytest.approx(float(p["psfmag_r"][i]), rel=1e-6)
    q = (
        "SELECT TOP 1 objid, psfmag_r, DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', "
        f"{ra}, {dec})) AS d FROM sdss_dr17.PhotoObj WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
        f"CIRCLE('ICRS', {ra}, {dec}, 0.001)) ORDER BY d"
    )
    t = pyvo.dal.TAPService(gw[1] + "/tap").run_sync(q).to_table()
    truth = float(separation(p["ra"][i], p["dec"][i], ra, dec))  # 0.5" of RA at this declination
    assert int(t["objid"][0]) == int(p["objid"][i]) and float(t["d"][0]) == pytest.approx(truth, rel=1e-6)


def test_skyserver_errors_unbounded_scans_and_the_row_cap(emu, tmp_path):
    emu_app, base = emu
    app = make_app(config(base, tmp_path), load_entrypoints=True)
    c = app.test_client()
    cone = "SELECT objid FROM sdss_dr17.PhotoObj WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 200.5, 36.85, 0.2))"
    emu_app.config["fail"] = "Incorrect syntax near 'FORM'."
    r = c.post("/tap/sync", data={"LANG": "ADQL", "QUERY": cone})
    assert r.status_code == 400 and b"SkyServer refused the query: error_message Incorrect syntax near" in r.data
    r = c.post(
        "/tap/sync", data={"LANG": "ADQL", "QUERY": "SELECT TOP 5 objid FROM sdss_dr17.PhotoObj WHERE psfmag_r < 15"}
    )
    assert r.status_code == 400 and b"too large to scan: add a position" in r.data and b"objid = ..." in r.data
    join = "SELECT TOP 3 s.z FROM sdss_dr17.SpecObj AS s JOIN sdss_dr17.PhotoObj AS p ON s.bestobjid = p.objid"
    r = c.post("/tap/sync", data={"LANG": "ADQL", "QUERY": join + " WHERE p.psfmag_r < 14"})
    assert r.status_code == 400 and b"sdss_dr17.SpecObj is too large to scan" in r.data
    emu_app.config["row_limit"] = 5  # SkyServer cuts at its cap; the gateway is told the same cap
    capped = make_app(config(base, tmp_path / "capped", row_limit=5), load_entrypoints=True)
    try:
        r = capped.test_client().post("/tap/sync", data={"LANG": "ADQL", "QUERY": cone})
        table, status, _ = parse_votable(r.data)
        assert r.status_code == 200 and status == "OVERFLOW" and len(table) == 5  # never passed off as complete
        r = capped.test_client().get(
            "/scs/sdss_dr17.PhotoObj", query_string={"RA": 200.5, "DEC": 36.85, "SR": 0.2, "RESPONSEFORMAT": "csv"}
        )
        assert len(r.get_data(as_text=True).splitlines()) == 1 + 5  # the cut rows only
        r = capped.test_client().get("/scs/sdss_dr17.PhotoObj", query_string={"RA": 200.5, "DEC": 36.85, "SR": 0.2})
        assert b'<INFO name="QUERY_STATUS" value="OVERFLOW"' in r.data
    finally:
        emu_app.config["row_limit"] = 500_000
        for a in (app, capped):
            a.extensions["vo_gateway"].jobs.close()


def test_release_is_validated(tmp_path):
    with pytest.raises(ConfigError, match=r"archives\.sdss\.release"):
        make_app(config("http://127.0.0.1:9", tmp_path, release="dr99"), load_entrypoints=True)


def test_tap_schema_has_the_documented_columns(gw):
    c = gw[0].test_client()
    r = c.post(
        "/tap/sync",
        data={
            "LANG": "ADQL",
            "QUERY": "SELECT column_name, datatype, unit, ucd FROM TAP_SCHEMA.columns WHERE table_name = 'sdss_dr17.PhotoObj'",
        },
    )
    t, status, _ = parse_votable(r.data)
    cols = {
        str(n): (str(d), str(u), str(q)) for n, d, u, q in zip(t["column_name"], t["datatype"], t["unit"], t["ucd"])
    }
    assert status == "OK" and len(cols) == 509
    assert cols["objid"][0] == "long" and cols["ra"] == ("double", "deg", "pos.eq.ra;meta.main")
    assert cols["psfmag_r"] == ("float", "mag", "phot.mag;em.opt.R")


@needs_stilts
def test_taplint_over_the_sdss_service(gw):
    """taplint: metadata (509 + 190 columns per table family) and capabilities of a gateway with
    the sdss kind; its query stages over TAP_SCHEMA (SDSS tables refuse ``SELECT TOP 1 *``
    without a position: "too large to scan", tested above)."""
    bad, _ = taplint(gw[1] + "/tap", "TMV TME TMS TMC CAP AVV QGE QPO QAS MDQ UWS", "tables=TAP_SCHEMA.*")
    assert bad == [], "\n".join(map(str, bad))


def test_crossmatch_with_another_archive(emu, tmp_path):
    """A TAP query joining the embedded demo table with SDSS: the planner sends SkyServer the
    covering cones as one union of indexed fGetNearbyObjEq calls; every demo star in the field
    finds itself (the emulator holds the same stars)."""
    from conftest import demo_config

    emu_app, base = emu
    cfg = demo_config(tmp_path)
    cfg["archives"]["sdss"] = {"kind": "sdss", "skyserver_url": base}
    app = make_app(cfg, load_entrypoints=True)
    q = (
        "SELECT d.objid, s.objid AS sdss_objid FROM demo.sdss_stars AS d JOIN sdss_dr17.PhotoObj AS s "
        "ON 1 = CONTAINS(POINT('ICRS', s.ra, s.dec), CIRCLE('ICRS', d.ra, d.dec, 1.0/3600)) "
        "WHERE 1 = CONTAINS(POINT('ICRS', d.ra, d.dec), CIRCLE('ICRS', 200.5, 36.85, 0.05))"
    )
    try:
        emu_app.config["requests"].clear()
        t, status, _ = parse_votable(app.test_client().post("/tap/sync", data={"LANG": "ADQL", "QUERY": q}).data)
        p = photo(emu_app)
        inside = separation(p["ra"], p["dec"], 200.5, 36.85) <= 0.05
        assert status == "OK" and sorted(zip(t["objid"], t["sdss_objid"])) == sorted((o, o) for o in p["objid"][inside])
        sent = [r[1]["cmd"] for r in emu_app.config["requests"]]
        assert len(sent) == 1 and "UNION SELECT objID FROM dbo.fGetNearbyObjEq(" in sent[0]
    finally:
        app.extensions["vo_gateway"].jobs.close()


def test_distance_cones_and_refused_geometry(gw, emu):
    """``DISTANCE(...) < r`` is a cone too (SkyServer's indexed join); other geometry is refused
    by name, with its position."""
    emu_app, _ = emu
    c = gw[0].test_client()
    emu_app.config["requests"].clear()
    q = "SELECT objid FROM sdss_dr17.Star WHERE DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', 200.5, 36.85)) < 0.02"
    t, status, _ = parse_votable(c.post("/tap/sync", data={"LANG": "ADQL", "QUERY": q}).data)
    p = photo(emu_app)
    assert sorted(int(v) for v in t["objid"]) == sorted(
        int(o) for o in p["objid"][separation(p["ra"], p["dec"], 200.5, 36.85) < 0.02]
    )
    (sent,) = [r[1]["cmd"] for r in emu_app.config["requests"]]
    assert "dbo.fGetNearbyObjEq(200.5, 36.85, 1.2)" in sent and "WHERE" not in sent
    poly = "1 = CONTAINS(POINT('ICRS', ra, dec), POLYGON('ICRS', 200.4, 36.8, 200.5, 36.9, 200.45, 36.82, 200.6, 36.8))"
    q = f"SELECT objid FROM sdss_dr17.Star WHERE {poly}"
    r = c.post("/tap/sync", data={"LANG": "ADQL", "QUERY": q})
    assert r.status_code == 400 and b"POLYGON that is not convex" in r.data and b"(line 1, column" in r.data
    q = "SELECT objid FROM sdss_dr17.Star WHERE 1 = INTERSECTS(CIRCLE('ICRS', ra, dec, 0.1), CIRCLE('ICRS', 200.5, 36.85, 0.1))"
    r = c.post("/tap/sync", data={"LANG": "ADQL", "QUERY": q + f" AND objid = {int(p['objid'][0])}"})
    assert r.status_code == 400 and b"INTERSECTS is not available on SkyServer" in r.data


def test_boxes_become_ra_dec_ranges_with_exact_edges(gw, emu, tmp_path):
    """A BOX on a table's position goes to SkyServer as an ra/dec range (its index) and one
    plane test per great-circle side; the rows are those the gateway's own DuckDB engine
    finds for the same BOX over the same stars (the embedded demo archive), and numpy's
    ra/dec box for the stars away from the sides."""
    from conftest import demo_config

    emu_app, _ = emu
    box = "BOX('ICRS', 200.5, 36.85, 0.1, 0.05)"
    q = f"SELECT objid FROM sdss_dr17.Star WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), {box})"
    emu_app.config["requests"].clear()
    t, status, _ = parse_votable(gw[0].test_client().post("/tap/sync", data={"LANG": "ADQL", "QUERY": q}).data)
    (sent,) = [r[1]["cmd"] for r in emu_app.config["requests"]]
    assert "Star.dec BETWEEN 36.82499" in sent and "Star.ra BETWEEN 200.44998" in sent and sent.count(">= 0") == 4
    demo = make_app(demo_config(tmp_path), load_entrypoints=True)
    try:
        dq = f"SELECT objid FROM demo.sdss_stars WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), {box})"
        d, _, _ = parse_votable(demo.test_client().post("/tap/sync", data={"LANG": "ADQL", "QUERY": dq}).data)
    finally:
        demo.extensions["vo_gateway"].jobs.close()
    assert status == "OK" and len(t) > 5 and sorted(map(int, t["objid"])) == sorted(map(int, d["objid"]))
    p = photo(emu_app)
    clear = (np.abs(p["ra"] - 200.5) < 0.049) & (np.abs(p["dec"] - 36.85) < 0.0245)
    assert set(map(int, p["objid"][clear])) <= set(map(int, t["objid"]))
    emu_app.config["requests"].clear()
    q = "SELECT objid FROM sdss_dr17.Star WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), BOX('ICRS', 0.01, 1.0, 0.1, 0.1))"
    r = gw[0].test_client().post("/tap/sync", data={"LANG": "ADQL", "QUERY": q})
    (sent,) = [r[1]["cmd"] for r in emu_app.config["requests"]]
    assert r.status_code == 200 and "(Star.ra >= 359.95" in sent and "OR Star.ra <= 0.0600" in sent  # across RA 0


def test_field_table(gw, emu):
    """``Field`` by ADQL: a cone on the field centres goes as fDistanceArcMinEq (no indexed
    function), the row is the emulator's (fieldID exact); without a position it is refused."""
    emu_app, _ = emu
    c = gw[0].test_client()
    q = (
        "SELECT fieldid, run, rerun, camcol, field, mjd_r FROM sdss_dr17.Field "
        "WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 200.45, 36.8, 0.2))"
    )
    t, status, _ = parse_votable(c.post("/tap/sync", data={"LANG": "ADQL", "QUERY": q}).data)
    truth = emu_app.config["db"].sql("SELECT fieldID, mjd_r FROM dbo.Field").fetchall()
    assert status == "OK" and [(int(t["fieldid"][0]), float(t["mjd_r"][0]))] == [(int(a), float(b)) for a, b in truth]
    assert (int(t["run"][0]), int(t["rerun"][0]), int(t["camcol"][0]), int(t["field"][0])) == (4510, 301, 4, 30)
    r = c.post("/tap/sync", data={"LANG": "ADQL", "QUERY": "SELECT fieldid FROM sdss_dr17.Field WHERE run = 4510"})
    assert r.status_code == 400 and b"sdss_dr17.Field is too large to scan" in r.data and b"fieldid = ..." in r.data


def _isolated_bright_star(emu_app, header):
    """The brightest star of the frame with no other catalogued star within 20"."""
    from gateway.imagecut import wcs_of

    p = photo(emu_app)
    x, y = wcs_of(header).wcs_world2pix(p["ra"], p["dec"], 0)
    ok = (x > 40) & (x < 2008) & (y > 40) & (y < 1449) & (p["psfmag_r"] > 14.5)
    best = None
    for i in np.where(ok)[0]:
        if (separation(p["ra"], p["dec"], p["ra"][i], p["dec"][i]) < 20 / 3600).sum() == 1:
            if best is None or p["psfmag_r"][i] < p["psfmag_r"][best]:
                best = i
    return best


def test_frames_by_sia2_datalink_and_soda(gw, emu):
    """The imaging flow with pyvo: SIA 2.0 finds the five frames of the field at a position,
    their access URLs are the SAS files astroquery.sdss's ``get_images`` downloads, DataLink
    gives ``#this`` and a SODA ``#cutout``; the cutout keeps nanomaggies, its WCS puts the asked
    centre within 1 pixel of its centre, and the pixel sum in a 7.4" aperture gives the star's
    catalogue PSF magnitude as m = 22.5 - 2.5 log10(sum), within 3 sigma."""
    import bz2

    import astropy.units as u
    import pyvo
    from astropy.io import fits
    from astroquery.sdss import SDSS

    from gateway.imagecut import wcs_of

    emu_app, base = emu
    images = pyvo.dal.SIA2Service(gw[1] + "/sia").search(pos=(200.45, 36.8, 0.01))
    table = images.to_table()
    assert sorted(str(i) for i in table["obs_id"]) == sorted(f"frame-{b}-004510-4-0030" for b in "giruz")
    for row in table:
        band = str(row["obs_id"])[6]
        expected = SDSS.IMAGING_URL_SUFFIX.format(
            base=base + "/sas", dr=17, instrument="eboss", rerun=301, run=4510, camcol=4, field=30, band=band
        )
        assert str(row["access_url"]) == expected
    assert pyvo.dal.SIA2Service(gw[1] + "/sia").search(pos=(10.0, -30.0, 0.01)).to_table().__len__() == 0
    r_frame = next(r for r in images if str(r["obs_id"]).startswith("frame-r-"))
    links = r_frame.getdatalink()
    by = {
        str(s): row for s, row in zip(links.to_table()["semantics"], links)
    }  # bysemantics asks the IVOA vocabulary server
    assert set(by) == {"#this", "#cutout"} and by["#this"].access_url == str(r_frame["access_url"])
    with bz2.open(ROOT / "data/demo/frame-r-004510-4-0030.fits.bz2") as f:
        header = fits.Header.fromfile(f)
    i = _isolated_bright_star(emu_app, header)
    p = photo(emu_app)
    ra, dec = float(p["ra"][i]), float(p["dec"][i])
    proc = links.get_first_proc()  # the #cutout row: SODA through its service descriptor
    hdul = fits.open(io.BytesIO(proc.processed(circle=[ra, dec, 12 / 3600] * u.deg).read()))
    cut = hdul[0]
    assert cut.header["BUNIT"] == "nanomaggy" and cut.header["NMGY"] == header["NMGY"]
    w = wcs_of(cut.header)
    ny, nx = cut.data.shape
    cx, cy = w.wcs_world2pix([[ra, dec]], 0)[0]
    assert abs(cx - (nx - 1) / 2) <= 1 and abs(cy - (ny - 1) / 2) <= 1
    yy, xx = np.mgrid[0:ny, 0:nx]
    rr = np.hypot(xx - cx, yy - cy) * 0.396  # arcsec
    ap = rr <= 7.4
    flux = float(cut.data[ap].sum())
    mag = 22.5 - 2.5 * np.log10(flux)
    sky = cut.data[(rr > 9) & (rr < 12)]
    ap_err = 1.0857 * float(sky.std()) * np.sqrt(ap.sum()) / flux
    sigma = float(np.hypot(ap_err, p["psfmagerr_r"][i]))
    assert abs(mag - float(p["psfmag_r"][i])) <= 3 * sigma, (mag, p["psfmag_r"][i], sigma)


def test_frame_requests_and_failures(gw, emu):
    """SIA without POS is a 400; a SAS answer cut short is a 503 naming the SAS, never a
    cutout of part of a frame; a cutout region off the frame has no data (204)."""
    emu_app, _ = emu
    c = gw[0].test_client()
    r = c.get("/sia/query", query_string={"COLLECTION": "SDSS DR17"})
    assert r.status_code == 400 and b"give POS" in r.data
    did = "ivo://sdss.org/dr17/frames?frame-g-004510-4-0030"
    emu_app.config["sas_cut"] = 100_000
    try:
        r = c.get("/soda/sdss/sync", query_string={"ID": did, "CIRCLE": "200.45 36.8 0.005"})
        assert r.status_code == 503 and b"the SDSS SAS broke off its answer" in r.data
    finally:
        emu_app.config["sas_cut"] = None
    r = c.get("/soda/sdss/sync", query_string={"ID": did, "CIRCLE": "10 -30 0.005"})
    assert r.status_code == 204
    r = c.get("/soda/sdss/sync", query_string={"ID": "ivo://sdss.org/dr17/frames?frame-q-1", "CIRCLE": "10 -30 0.005"})
    assert r.status_code in (400, 404) and b"not an SDSS frame" in r.data
