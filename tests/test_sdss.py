"""Kind ``sdss`` (plugins/sdss) against the SkyServer emulation (tests/emulators/sdss.py): the
seed's photo x spec join with conditions and TOP 10, the PSF magnitude of a star at a position,
the requests as astroquery.sdss sends them, SkyServer's error-in-200 and row cap, refused scans,
exact 64-bit ids, and pyvo's TAP and SCS.  Rows are checked against numpy over the emulator's
own tables."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_stilts
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
        "archives": {"sdss": {"kind": "sdss", "skyserver_url": base, "timeout": 5, **extra}},
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
    return {n: t.column(n).to_numpy(zero_copy_only=False) for n in ("objid", "ra", "dec", "psfmag_r")}


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
    box = "1 = CONTAINS(POINT('ICRS', ra, dec), BOX('ICRS', 200.5, 36.85, 0.1, 0.1))"
    r = c.post("/tap/sync", data={"LANG": "ADQL", "QUERY": f"SELECT objid FROM sdss_dr17.Star WHERE {box}"})
    assert r.status_code == 400 and b"too large to scan" in r.data  # a box is no indexed bound
    q = f"SELECT objid FROM sdss_dr17.Star WHERE {box} AND objid = {int(p['objid'][0])}"
    r = c.post("/tap/sync", data={"LANG": "ADQL", "QUERY": q})
    assert r.status_code == 400 and b"BOX is not available on SkyServer" in r.data and b"(line 1, column" in r.data
