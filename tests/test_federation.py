"""One gateway over the demo archive, CADC (kind ivoa, emulated from real fixtures), SkyMapper
(kind skymapper, emulated sm-cone) and HSC-SSP (kind hsc, emulated catalog-job API, an operator
service account): taplint finds no errors, and a pyvo user sees every archive through the one
TAP service (issues 4 and 6)."""

import subprocess

import pytest
from conftest import demo_config, needs_stilts
from emulators.cadc import cadc_app
from emulators.hsc import hsc_app
from emulators.skymapper import skymapper_app

from gateway.testing import make_app, serve, taplint


@pytest.fixture(scope="module")
def federated(tmp_path_factory, postgres_url):
    tmp = tmp_path_factory.mktemp("fed")
    import os

    os.environ["VO_GATEWAY_TEST_HSC_PASSWORD"] = "svc-pw"
    with (
        serve(cadc_app()) as cadc,
        serve(skymapper_app()) as sm,
        serve(hsc_app(postgres_url, users={"svc": "svc-pw"}, n=300, missing=())) as hsc,
    ):
        cfg = demo_config(tmp)
        cfg["archives"]["cadc"] = {"kind": "ivoa", "tap_url": cadc + "/argus", "schemas": {"ivoa": "cadc"}}
        cfg["archives"]["skymapper"] = {"kind": "skymapper", "cone_url": sm + "/sm-cone/public/query"}
        cfg["archives"]["hsc"] = {
            "kind": "hsc",
            "api_url": hsc + "/datasearch/api/catalog_jobs/",
            "release_version": "dr4",
            "schemas": {"s23b_wide": "hsc_s23b_wide"},
            "photoz_tables": ["photoz_mizuki"],
            "poll_initial": 0.01,
            "das_url": None,
            "psf_url": None,
            "account": {"username": "svc", "password": {"env": "VO_GATEWAY_TEST_HSC_PASSWORD"}},
        }
        app = make_app(cfg, load_entrypoints=True)
        with serve(app) as url:
            yield url
        app.extensions["vo_gateway"].jobs.close()


def test_pyvo_sees_every_archive(federated):
    import pyvo

    tap = pyvo.dal.TAPService(federated + "/tap")
    names = {t.name for t in tap.tables}
    assert {
        "demo.gaia_dr3_g10",
        "cadc.ObsCore",
        "skymapper_dr2.master",
        "skymapper_dr4.master",
        "hsc_s23b_wide.forced",
        "hsc_s23b_wide.photoz_mizuki",
    } <= names
    assert len(tap.run_sync("SELECT TOP 2 object_id, i_cmodel_mag FROM hsc_s23b_wide.forced")) == 2
    star = tap.run_sync("SELECT TOP 2 * FROM hsc_s23b_wide.random").to_table()  # HSC adds coord: dropped by name
    assert len(star) == 2 and star.colnames == [c.name for c in tap.tables["hsc_s23b_wide.random"].columns]
    assert len(tap.run_sync("SELECT TOP 3 source_id FROM demo.gaia_dr3_g10")) == 3
    assert len(tap.run_sync("SELECT obs_id FROM cadc.ObsCore")) == 1
    assert len(tap.run_async("SELECT obs_id, s_ra FROM cadc.ObsCore")) == 1  # upstream UWS job
    assert len(tap.run_sync("SELECT TOP 4 object_id FROM skymapper_dr2.master")) == 4
    res = pyvo.dal.SCSService(federated + "/scs/skymapper_dr4.master").search(pos=(33.64, -0.77), radius=0.1)
    assert len(res) > 0


@needs_stilts
def test_taplint_over_the_federated_service(federated):
    bad, _ = taplint(federated + "/tap")
    assert bad == []


@needs_stilts
def test_stilts_tapquery_reaches_each_upstream(federated):
    for q, first in (
        ("SELECT obs_id, s_ra FROM cadc.ObsCore", "obs_id,s_ra"),
        ("SELECT TOP 3 object_id, raj2000 FROM skymapper_dr2.master", "object_id,raj2000"),
    ):
        out = subprocess.run(
            ["stilts", "tapquery", f"tapurl={federated}/tap", f"adql={q}", "sync=true", "ofmt=csv"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        lines = out.stdout.strip().splitlines()
        assert lines[0] == first and len(lines) > 1
