"""Pan-STARRS DR2 through MAST's VO TAP (configs/mast_vo_tap.yaml, kind ``ivoa``) against the
MAST VO TAP emulation (tests/emulators/mast_tap.py): the shipped configuration starts offline on
its bundled snapshot; the seed's ForcedWarpMeasurement light curve of an RR Lyrae runs as ADQL,
sync and async, its rows numpy's over the emulator's data; the 100,000-row limit surfaces as
OVERFLOW; an upload join is forwarded; taplint is clean over a gateway with sdss and MAST TAP."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml
from conftest import ROOT, needs_stilts
from emulators.mast_tap import FILTERS, LIMIT, RR_LYRAE, mast_tap_app
from emulators.sdss import sdss_app

from gateway.testing import make_app, parse_votable, serve, taplint

CURVE = (
    "SELECT fwm.obsTime, f.filterType, fwm.FpsfFlux, fwm.FpsfFluxErr\n"
    "FROM mast_tap_ps1dr2.ForcedWarpMeasurement AS fwm\n"
    "JOIN mast_tap_ps1dr2.Filter AS f ON f.filterID = fwm.filterID\n"
    f"WHERE fwm.objID = {RR_LYRAE}\n"
    "ORDER BY fwm.obsTime"
)


def shipped(tmp, tap_url=None, **sections):
    """configs/mast_vo_tap.yaml with its snapshots copied under ``tmp`` (a start with the
    upstream reachable rewrites them) and, optionally, the PS1 archive pointed elsewhere."""
    cfg = yaml.safe_load((ROOT / "configs/mast_vo_tap.yaml").read_text())
    for a in cfg["archives"].values():
        src = ROOT / "configs" / a["snapshot"]
        a["snapshot"] = str(tmp / src.name)
        shutil.copy(src, a["snapshot"])
        a["tap_url"] = "http://127.0.0.1:9/vo-tap"  # nothing listens: the snapshot is used
    if tap_url:
        cfg["archives"]["mast_tap_ps1dr2"]["tap_url"] = tap_url
        cfg["archives"]["mast_tap_ps1dr2"]["compression"] = False
    cfg["jobs"] = {"store": f"sqlite:///{tmp}/j.sqlite", "results_dir": str(tmp / "r"), "heartbeat": 0.2}
    cfg["limits"] = {"enabled": False}
    cfg.update(sections)
    return cfg


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    app = mast_tap_app(tmp_path_factory.mktemp("mast_tap_emu"))
    with serve(app) as base:
        yield app, base + "/tap"
    app.extensions["vo_gateway"].jobs.close()


@pytest.fixture(scope="module")
def gw(emu, tmp_path_factory):
    app = make_app(shipped(tmp_path_factory.mktemp("mast_tap"), emu[1]), load_entrypoints=True)
    with serve(app) as url:
        yield app, url
    app.extensions["vo_gateway"].jobs.close()


def col(table, name):
    """A result column by its case-insensitive ADQL name (the emulator's names are lower case,
    MAST's mixed)."""
    return table[next(n for n in table.colnames if n.lower() == name.lower())]


def truth(emu_app):
    lc = emu_app.config["lc"]
    mjd = lc.column("mjd").to_numpy()
    flux = 3631.0 * 10 ** (-0.4 * lc.column("mag").to_numpy().astype(float))
    return mjd, lc.column("band").to_pylist(), flux


def test_shipped_config_starts_offline_with_the_casjobs_tables(tmp_path):
    """MAST unreachable: the bundled snapshot gives TAP_SCHEMA every PS1 DR2 and HSC table of
    the recorded lists, with the CasJobs names."""
    app = make_app(shipped(tmp_path), load_entrypoints=True)
    try:
        q = "SELECT table_name FROM TAP_SCHEMA.tables WHERE schema_name LIKE 'mast_tap_%'"
        t, status, _ = parse_votable(app.test_client().post("/tap/sync", data={"LANG": "ADQL", "QUERY": q}).data)
        names = {str(n) for n in t["table_name"]}
        recorded = (ROOT / "configs/mast_vo_tap/mast_vo_tap_hsc_ps1dr2_table_columns.txt").read_text()
        listed = {ln for ln in recorded.splitlines() if ln.startswith("dbo.")}
        assert status == "OK" and len(names) == len(listed) == 91
        for n in (
            "ObjectThin",
            "MeanObject",
            "StackObjectThin",
            "StackObjectAttributes",
            "Detection",
            "ForcedWarpMeasurement",
        ):
            assert f"mast_tap_ps1dr2.{n}" in names
        assert "mast_tap_hsc.SumMagAper2CatView" in names and "mast_tap_hsc.DetailedCatalog" in names
    finally:
        app.extensions["vo_gateway"].jobs.close()


def test_forced_warp_light_curve_of_an_rr_lyrae(gw, emu):
    """The slides' PS1 flow as ADQL: one object's ForcedWarpMeasurement PSF fluxes by time,
    sync and async (UWS forwarded to MAST's UWS); rows equal the Stripe 82 epochs the emulator
    holds, and -2.5 log10(flux / 3631 Jy) gives back their AB magnitudes."""
    import pyvo

    emu_app, _ = emu
    mjd, bands, flux = truth(emu_app)
    tap = pyvo.dal.TAPService(gw[1] + "/tap")
    for res in (tap.run_sync(CURVE).to_table(), tap.run_async(CURVE).to_table()):
        assert len(res) == len(mjd) > 100
        assert np.allclose(np.asarray(col(res, "obsTime"), float), mjd, rtol=0, atol=1e-6)
        assert [str(b) for b in col(res, "filterType")] == bands
        assert np.allclose(np.asarray(col(res, "FpsfFlux"), float), flux, rtol=1e-6)
    mags = -2.5 * np.log10(np.asarray(col(res, "FpsfFlux"), float) / 3631.0)
    assert np.allclose(mags, emu_app.config["lc"].column("mag").to_numpy(), atol=1e-5)
    sent = emu_app.config["requests"][-1]
    assert "dbo.ForcedWarpMeasurement" in sent["QUERY"] and "mast_tap_ps1dr2" not in sent["QUERY"]


def test_the_100000_row_limit_is_overflow(gw, emu):
    """MAST stops at 100,000 rows and says so only in VOTable; the gateway asks CSV, sends
    MAXREC = 100,000 and reports an answer of that length as OVERFLOW, never as complete."""
    emu_app, _ = emu
    c = gw[0].test_client()
    q = "SELECT objID, obsTime FROM mast_tap_ps1dr2.ForcedWarpMeasurement WHERE filterID = 1"
    r = c.post("/tap/sync", data={"LANG": "ADQL", "QUERY": q, "MAXREC": 150_000})
    t, status, _ = parse_votable(r.data)
    assert r.status_code == 200 and status == "OVERFLOW" and len(t) == LIMIT
    assert emu_app.config["requests"][-1]["MAXREC"] == str(LIMIT)
    assert emu_app.config["requests"][-1]["RESPONSEFORMAT"] == "csv"
    r = c.post("/tap/sync", data={"LANG": "ADQL", "QUERY": q + " AND objID < 50001", "MAXREC": 150_000})
    t, status, _ = parse_votable(r.data)
    assert status == "OK" and len(t) == 50_000  # under the limit: complete
    r = c.post("/tap/sync", data={"LANG": "ADQL", "QUERY": q, "MAXREC": 10})
    t, status, _ = parse_votable(r.data)
    assert status == "OVERFLOW" and len(t) == 10 and emu_app.config["requests"][-1]["MAXREC"] == "11"


def test_upload_join_is_forwarded(gw, emu):
    """A TAP_UPLOAD joined with ObjectThin by id goes to MAST's TAP with the upload (no cone
    needed, unlike the catalogs API)."""
    import pyvo
    from astropy.table import Table

    emu_app, _ = emu
    mine = Table({"name": ["rrlyr", "none"], "objid": np.array([RR_LYRAE, 7], dtype=np.int64)})
    q = (
        "SELECT u.name, o.objID, o.raMean, o.decMean FROM TAP_UPLOAD.mine AS u "
        "JOIN mast_tap_ps1dr2.ObjectThin AS o ON o.objID = u.objid"
    )
    t = pyvo.dal.TAPService(gw[1] + "/tap").run_sync(q, uploads={"mine": mine}).to_table()
    assert [(str(n), int(o)) for n, o in zip(t["name"], col(t, "objID"))] == [("rrlyr", RR_LYRAE)]
    assert "UPLOAD" in emu_app.config["requests"][-1]
    assert set(FILTERS) >= {"g", "r"}


@needs_stilts
def test_taplint_over_sdss_and_mast_tap(emu, tmp_path):
    """taplint over one gateway with the sdss kind and the MAST TAP archives: 0 errors and 0
    failures (metadata of every table, capabilities, queries over TAP_SCHEMA and the PS1 tables)."""
    sdss = sdss_app()
    with serve(sdss) as base:
        cfg = shipped(tmp_path, emu[1])
        cfg["archives"]["sdss"] = {"kind": "sdss", "skyserver_url": base, "sas_url": base + "/sas"}
        app = make_app(cfg, load_entrypoints=True)
        try:
            with serve(app) as url:
                bad, _ = taplint(
                    url + "/tap",
                    "TMV TME TMS TMC CAP AVV QGE QPO QAS MDQ UWS",
                    "tables=TAP_SCHEMA.* mast_tap_ps1dr2.Filter mast_tap_ps1dr2.ObjectThin",
                )
        finally:
            app.extensions["vo_gateway"].jobs.close()
    assert bad == [], "\n".join(map(str, bad))
