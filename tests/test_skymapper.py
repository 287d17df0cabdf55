"""Kind ``skymapper`` (plugins/skymapper) against the sm-cone emulation and, for the TAP path,
a real TAP service on loopback serving the same synthetic sky as ``dr2.master`` (issue 6)."""

import io
import subprocess
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import needs_stilts
from emulators.skymapper import skymapper_app

from gateway.hookspecs import hookimpl
from gateway.sky import separation as _sep
from gateway.testing import make_app, parse_votable, serve

SEED_CONE = (
    "http://skymapper.anu.edu.au/sm-cone/public/query?RA=33.639837321&DEC=-0.766719986&SR=0.1&VERB=3"
    "&CATALOG=dr2.master&RESPONSEFORMAT=XML"
)  # the customer's slides
RA0, DEC0 = 33.639837321, -0.766719986


@pytest.fixture(scope="module")
def emu():
    app = skymapper_app()
    with serve(app) as base:
        yield app, base


def sm_config(base, tmp, **extra):
    return {
        "archives": {"sm": {"kind": "skymapper", "cone_url": base + "/sm-cone/public/query", "timeout": 2, **extra}},
        "jobs": {"store": f"sqlite:///{tmp}/j.sqlite", "results_dir": str(tmp / "r")},
    }


@pytest.fixture(scope="module")
def gw(emu, tmp_path_factory):
    app = make_app(sm_config(emu[1], tmp_path_factory.mktemp("sm")), load_entrypoints=True)
    with serve(app) as url:
        yield app, url
    app.extensions["vo_gateway"].jobs.close()


def truth(emu_app, catalog, ra, dec, r):
    t = emu_app.catalogue(catalog)
    d = _sep(t["raj2000"].to_numpy(), t["dej2000"].to_numpy(), ra, dec)
    return t.filter(d <= r), d


def test_scs_sends_the_seed_request_and_returns_the_upstream_rows(gw, emu):
    import pyvo

    app, base = emu
    res = pyvo.dal.SCSService(gw[1] + "/scs/skymapper_dr2.master").search(pos=(RA0, DEC0), radius=0.1, verbosity=3)
    sent = app.requests[-1]
    seed = {k: v[0] for k, v in parse_qs(urlsplit(SEED_CONE).query).items()}
    assert {k: v for k, v in sent.items() if k != "RESPONSEFORMAT"} == {
        k: v for k, v in seed.items() if k != "RESPONSEFORMAT"
    }
    assert sent["RESPONSEFORMAT"] == "CSV"  # parsed with pyarrow
    t = res.to_table()
    expected, _ = truth(app, "dr2.master", RA0, DEC0, 0.1)
    assert (
        sorted(map(int, t["object_id"])) == sorted(expected["object_id"].to_pylist()) and len(t) > 10
    )  # ID_MAIN is char (SCS 1.03)
    assert len(t.colnames) == 100
    fields = {f.name: f for f in res.votable.get_first_table().fields}
    assert fields["g_psf"].unit == "mag" and fields["g_psf"].datatype == "float"
    masked = t["e_g_psf"].mask.sum()
    assert masked == sum(v is None for v in expected["e_g_psf"].to_pylist())  # nulls kept


SEED_PHOT = (
    "http://skymapper.anu.edu.au/sm-cone/public/query?RA=33.639837321&DEC=-0.766719986&SR=0.1&VERB=3"
    "&CATALOG=dr2.photometry&RESPONSEFORMAT=CSV"
)  # the customer's slides


def test_per_epoch_photometry_reproduces_the_seed_request(emu, tmp_path):
    """``dr2.photometry`` (and ``dr4.photometry``) can be configured: a pyvo SCS search at the
    seed's position sends exactly the seed's sm-cone request, the rows are the emulator's
    detections within the cone (numpy on ra_img/decl_img), and ADQL gives one object's epochs."""
    import pyvo
    import requests

    app, base = emu
    gwapp = make_app(
        sm_config(base, tmp_path, catalogs=["dr2.master", "dr2.photometry", "dr4.photometry"]), load_entrypoints=True
    )
    try:
        with serve(gwapp) as url:
            res = pyvo.dal.SCSService(url + "/scs/skymapper_dr2.photometry").search(
                pos=(RA0, DEC0), radius=0.1, verbosity=3
            )
            sent = app.requests[-1]
            assert sent == {k: v[0] for k, v in parse_qs(urlsplit(SEED_PHOT).query).items()}
            t = app.catalogue("dr2.photometry")
            d = _sep(t["ra_img"].to_numpy(), t["decl_img"].to_numpy(), RA0, DEC0)
            want = t.filter(d <= 0.1)
            got = res.to_table()
            assert (
                sorted(zip(map(int, got["object_id"]), map(int, got["image_id"])))
                == sorted(zip(want["object_id"].to_pylist(), want["image_id"].to_pylist()))
                and len(got) > 40
            )
            oid = int(want["object_id"][0].as_py())
            q = (
                f"SELECT image_id, filter, mag_psf FROM skymapper_dr2.photometry WHERE object_id = {oid} AND "
                f"1 = CONTAINS(POINT('ICRS', ra_img, decl_img), CIRCLE('ICRS', {RA0}, {DEC0}, 0.1))"
            )
            r = requests.get(url + "/tap/sync", params={"LANG": "ADQL", "QUERY": q})
            epochs = parse_votable(r.content)[0]
            mine = want.filter(pc.equal(want["object_id"], oid))
            assert sorted(map(int, epochs["image_id"])) == sorted(mine["image_id"].to_pylist()) and len(epochs) == 4
            tables = {t.name for t in pyvo.dal.TAPService(url + "/tap").tables}
            assert {"skymapper_dr2.photometry", "skymapper_dr4.photometry"} <= tables
    finally:
        gwapp.extensions["vo_gateway"].jobs.close()


def test_scs_limits_and_upstream_errors(gw, emu, tmp_path):
    import requests

    r = requests.get(gw[1] + "/scs/skymapper_dr2.master", params={"RA": RA0, "DEC": DEC0, "SR": 2})
    assert b"limited to a radius of 1.0 deg" in r.content
    broken = make_app(sm_config("http://127.0.0.1:9", tmp_path), load_entrypoints=True)
    try:
        r = broken.test_client().get("/scs/skymapper_dr4.master", query_string={"RA": RA0, "DEC": DEC0, "SR": 0.1})
        assert r.status_code == 503 and b"archive sm: SkyMapper cone search unreachable" in r.data
    finally:
        broken.extensions["vo_gateway"].jobs.close()


def test_adql_bounded_by_a_cone_is_answered_exactly(gw, emu):
    app, _ = emu
    c = gw[0].test_client()
    q = (
        "SELECT object_id, g_psf, r_psf, g_psf - r_psf AS gr, "
        "DISTANCE(POINT('ICRS', raj2000, dej2000), POINT('ICRS', 33.64, -0.77)) AS d FROM skymapper_dr2.master "
        "WHERE 1 = CONTAINS(POINT('ICRS', raj2000, dej2000), CIRCLE('ICRS', 33.64, -0.77, 0.2)) "
        "AND (g_psf < 14 OR r_psf > 20) ORDER BY d"
    )
    r = c.get("/tap/sync", query_string={"LANG": "ADQL", "QUERY": q})
    got, status, _ = parse_votable(r.data)
    assert status == "OK"
    assert app.requests[-1]["SR"] == "0.2" and app.requests[-1]["VERB"] == "3"
    sel, d = truth(app, "dr2.master", 33.64, -0.77, 0.2)
    g, rr = sel["g_psf"].to_numpy(), sel["r_psf"].to_numpy()
    keep = (g < 14) | (rr > 20)
    ids = np.array(sel["object_id"].to_pylist())[keep]
    dist = _sep(sel["raj2000"].to_numpy(), sel["dej2000"].to_numpy(), 33.64, -0.77)[keep]
    assert list(got["object_id"]) == list(ids[np.argsort(dist, kind="stable")])
    assert np.allclose(got["gr"], got["g_psf"] - got["r_psf"])
    r = c.get(
        "/tap/sync",
        query_string={"LANG": "ADQL", "QUERY": "SELECT object_id FROM skymapper_dr4.master WHERE g_psf < 13"},
    )
    assert r.status_code == 400 and b"add a cone on skymapper_dr4.master" in r.data
    # any n rows (no WHERE/ORDER BY): taken around sample_position, the cone growing until enough
    for extra in (
        {"QUERY": "SELECT TOP 300 object_id, raj2000 FROM skymapper_dr4.master"},
        {"QUERY": "SELECT object_id FROM skymapper_dr4.master", "MAXREC": "250"},
    ):
        r = c.get("/tap/sync", query_string={"LANG": "ADQL", **extra})
        t, status, _ = parse_votable(r.data)
        assert len(t) == int(extra.get("MAXREC", 300)) and status == ("OVERFLOW" if "MAXREC" in extra else "OK")
        assert float(app.requests[-1]["SR"]) > 0.05 and app.requests[-1]["CATALOG"] == "dr4.master"


def test_metadata_snapshot_in_tap_schema(gw):
    from astropy.io.votable.ucd import check_ucd

    c = gw[0].test_client()
    r = c.get(
        "/tap/sync",
        query_string={
            "LANG": "ADQL",
            "QUERY": "SELECT column_name, unit, ucd FROM TAP_SCHEMA.columns WHERE table_name = 'skymapper_dr2.master'",
        },
    )
    t, _, _ = parse_votable(r.data)
    assert len(t) == 100
    by = {row["column_name"]: row for row in t}
    assert by["raj2000"]["ucd"] == "pos.eq.ra;meta.main" and by["i_psf"]["ucd"] == "phot.mag;em.opt.I"
    assert all(check_ucd(u, check_controlled_vocabulary=True) for u in t["ucd"] if u)


class Recorder:
    def __init__(self):
        self.queries = []

    @hookimpl
    def gateway_query_started(self, actor, protocol, archive, query):
        self.queries.append(query)


@pytest.fixture(scope="module")
def sm_tap(emu, tmp_path_factory):
    """SkyMapper's TAP, emulated by a gateway serving the same synthetic dr2.master."""
    from vo_gateway_skymapper.metadata import dr2_master

    tmp = tmp_path_factory.mktemp("smtap")
    pq.write_table(emu[0].catalogue("dr2.master"), tmp / "master.parquet")
    cols = [
        {"name": c.name, "unit": c.unit, "ucd": c.ucd, "description": c.description} for c in dr2_master("dr2").columns
    ]
    rec = Recorder()
    from vo_gateway_skymapper.metadata import photometry

    phot = emu[0].catalogue("dr2.photometry")
    pq.write_table(phot, tmp / "photometry.parquet")
    image_ids = np.unique(phot["image_id"].to_numpy())
    rng = np.random.default_rng(7)
    pq.write_table(
        pa.table(
            {
                "image_id": image_ids,
                "date": rng.uniform(56000, 58500, len(image_ids)),
                "exp_time": np.full(len(image_ids), 100.0, np.float32),
            }
        ),
        tmp / "images.parquet",
    )
    pcols = [
        {"name": c.name, "unit": c.unit, "ucd": c.ucd, "description": c.description}
        for c in photometry("dr2", "dr2").columns
    ]
    icols = [
        {"name": "image_id", "description": "image identifier", "ucd": "meta.id;obs.image"},
        {"name": "date", "description": "MJD of the exposure start", "unit": "d", "ucd": "time.start"},
        {"name": "exp_time", "description": "exposure time", "unit": "s", "ucd": "time.duration;obs.exposure"},
    ]
    app = make_app(
        {
            "archives": {
                "sm": {
                    "kind": "embedded",
                    "adql_schema": "dr2",
                    "tables": [
                        {
                            "name": "master",
                            "source": str(tmp / "master.parquet"),
                            "description": "SkyMapper DR2 master (emulated)",
                            "columns": cols,
                            "ra_column": "raj2000",
                            "dec_column": "dej2000",
                            "id_column": "object_id",
                        },
                        {
                            "name": "photometry",
                            "source": str(tmp / "photometry.parquet"),
                            "description": "SkyMapper DR2 photometry",
                            "columns": pcols,
                            "ra_column": "ra_img",
                            "dec_column": "decl_img",
                        },
                        {
                            "name": "images",
                            "source": str(tmp / "images.parquet"),
                            "description": "SkyMapper DR2 images",
                            "columns": icols,
                        },
                    ],
                }
            },
            "jobs": {"store": f"sqlite:///{tmp}/j.sqlite", "results_dir": str(tmp / "r")},
        },
        plugins=[rec],
        load_entrypoints=True,
    )
    with serve(app) as base:
        yield base + "/tap", rec
    app.extensions["vo_gateway"].jobs.close()


def test_master_rows_link_to_their_light_curves(emu, sm_tap, tmp_path):
    """With SkyMapper's TAP (emulated), master rows carry a DataLink service descriptor; each
    object's #auxiliary link is its light curve: every dr2.photometry detection with its
    image's MJD, by time (compared with the emulator's rows joined in pandas)."""
    import pyvo

    tap_url, rec = sm_tap
    app = make_app(
        sm_config(emu[1], tmp_path, tap_url=tap_url, catalogs=["dr2.master", "dr2.photometry", "dr2.images"]),
        load_entrypoints=True,
    )
    try:
        with serve(app) as url:
            res = pyvo.dal.TAPService(url + "/tap").run_sync(
                "SELECT TOP 3 object_id, raj2000, dej2000 FROM skymapper_dr2.master WHERE "
                f"1 = CONTAINS(POINT('ICRS', raj2000, dej2000), CIRCLE('ICRS', {RA0}, {DEC0}, 0.1))"
            )
            assert len(res) == 3
            phot = emu[0].catalogue("dr2.photometry").to_pandas()
            images = pq.read_table(next(p for p in tmp_path.parent.glob("smtap*/images.parquet"))).to_pandas()
            for row, links in zip(res, res.iter_datalinks()):
                aux = [lk for lk in links if lk.semantics == "#auxiliary"]
                assert len(aux) == 1 and aux[0].content_type == "application/x-votable+xml"
                curve = parse_votable(__import__("requests").get(aux[0].access_url).content)[0]
                want = phot[phot.object_id == int(row["object_id"])].merge(images, on="image_id").sort_values("date")
                assert list(curve["image_id"]) == list(want["image_id"]) and len(want) == 4
                assert np.allclose(curve["mjd"], want["date"]) and list(curve["filter"]) == list(want["filter"])
    finally:
        app.extensions["vo_gateway"].jobs.close()


def test_tap_path_forwards_and_handles_the_distance_quirk(emu, sm_tap, gw, tmp_path):
    tap_url, rec = sm_tap
    app = make_app(sm_config(emu[1], tmp_path, tap_url=tap_url, catalogs=["dr2.master"]), load_entrypoints=True)
    try:
        c = app.test_client()
        q = (
            "SELECT TOP 20 object_id, DISTANCE(POINT('ICRS', raj2000, dej2000), POINT('ICRS', 33.64, -0.77)) AS d "
            "FROM skymapper_dr2.master WHERE 1 = CONTAINS(POINT('ICRS', raj2000, dej2000), "
            "CIRCLE('ICRS', 33.64, -0.77, 0.2)) ORDER BY DISTANCE(POINT('ICRS', raj2000, dej2000), POINT('ICRS', 33.64, -0.77))"
        )
        r = c.get("/tap/sync", query_string={"LANG": "ADQL", "QUERY": q})
        via_tap, status, _ = parse_votable(r.data)
        sent = rec.queries[-1]
        assert status == "OK" and "FROM dr2.master" in sent and 'ORDER BY "d"' in sent
        r = (
            gw[0]
            .test_client()
            .get(
                "/tap/sync",
                query_string={
                    "LANG": "ADQL",
                    "QUERY": q.replace(
                        "ORDER BY DISTANCE(POINT('ICRS', raj2000, dej2000), POINT('ICRS', 33.64, -0.77))", "ORDER BY d"
                    ),
                },
            )
        )
        via_cone, _, _ = parse_votable(r.data)
        assert list(via_tap["object_id"]) == list(via_cone["object_id"]) and len(via_tap) == 20
        r = c.get(
            "/tap/sync",
            query_string={
                "LANG": "ADQL",
                "QUERY": "SELECT TOP 2 object_id FROM skymapper_dr2.master "
                "ORDER BY DISTANCE(POINT('ICRS', raj2000, dej2000), POINT('ICRS', 1, 1))",
            },
        )
        assert r.status_code == 400 and b"select the DISTANCE with an alias" in r.data
    finally:
        app.extensions["vo_gateway"].jobs.close()


@needs_stilts
def test_stilts_cone_through_the_gateway(gw, emu):
    out = subprocess.run(
        [
            "stilts",
            "cone",
            f"serviceurl={gw[1]}/scs/skymapper_dr2.master",
            f"lon={RA0}",
            f"lat={DEC0}",
            "radius=0.05",
            "verb=1",
            "ofmt=csv",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    expected, _ = truth(emu[0], "dr2.master", RA0, DEC0, 0.05)
    assert lines[0].split(",")[:3] == ["object_id", "raj2000", "dej2000"]
    assert sorted(int(line.split(",")[0]) for line in lines[1:]) == sorted(expected["object_id"].to_pylist())


SEED_SIAP = (
    "http://api.skymapper.nci.org.au/public/siap/dr2/query?POS=33.639837321,-0.766719986&SIZE=0.17,0.17"
    "&FORMAT=image/fits&INTERSECT=center&%20&RESPONSEFORMAT=HTML"
)  # the customer's slides


@pytest.fixture(scope="module")
def gw_images(emu, tmp_path_factory):
    app = make_app(
        sm_config(emu[1], tmp_path_factory.mktemp("smi"), siap_url=emu[1] + "/siap/dr2"), load_entrypoints=True
    )
    with serve(app) as url:
        yield app, url
    app.extensions["vo_gateway"].jobs.close()


def test_sia2_sends_the_seed_siap_request_and_lists_each_image(gw_images, emu):
    import pyvo
    from emulators.skymapper import synthetic_images

    app, _ = emu
    res = pyvo.dal.SIA2Service(gw_images[1] + "/sia/query", check_baseurl=False).search(
        pos=(RA0, DEC0, 0.085), band=(4.5e-7, 6.5e-7)
    )
    sent = app.requests[-1]
    seed = {k: v[0] for k, v in parse_qs(urlsplit(SEED_SIAP).query).items()}
    assert sent["_path"] == "/siap/dr2/query"
    assert [sent[k] for k in ("POS", "SIZE", "FORMAT")] == [seed[k] for k in ("POS", "SIZE", "FORMAT")]
    assert sent["INTERSECT"] == "OVERLAPS" and sent["BAND"] == "g,r"  # SIA 2.0 semantics: overlapping images
    t = res.to_table()
    c = np.cos(np.radians(DEC0))
    expected = sorted(
        i["unique_image_id"]
        for i in synthetic_images()
        if i["band"] in "gr"
        and abs((i["ra"] - RA0) * c) <= (i["w"] + 0.17) / 2
        and abs(i["dec"] - DEC0) <= (i["h"] + 0.17) / 2
    )
    assert sorted(t["obs_id"]) == expected and len(expected) == 8
    assert set(t["obs_publisher_did"]) == {f"ivo://skymapper.anu.edu.au/dr2?{i}" for i in expected}
    assert all(4.32e-7 <= v <= 6.97e-7 for v in t["em_min"])
    assert {"s_region", "t_exptime", "s_resolution", "access_url"} <= set(t.colnames)
    assert all(u.startswith(emu[1] + "/siap/dr2/get_image?") for u in t["access_url"])
    import requests

    got = requests.get(t["access_url"][0])  # the SIA 2.0 access_url downloads the image
    assert got.status_code == 200 and got.content[:6] == b"SIMPLE"


def test_sia1_intersect_is_passed_to_skymapper_siap(gw_images, emu):
    """The seed's SIAP URL (INTERSECT=center) through the gateway's SIA 1.0 (SIA 1.0 §4.1):
    pyvo's SIA 1 search sends POS/SIZE/FORMAT/INTERSECT; SkyMapper's SIAP gets the seed's own
    POS, SIZE, FORMAT and INTERSECT=CENTER, and the images listed are exactly those containing
    the position (numpy over the emulator's images), with their get_image URLs."""
    import pyvo
    from emulators.skymapper import synthetic_images

    app, _ = emu
    seed = {k: v[0] for k, v in parse_qs(urlsplit(SEED_SIAP).query).items()}
    res = pyvo.dal.SIAService(gw_images[1] + "/sia1?").search(
        (RA0, DEC0), size=0.17, format="image/fits", intersect="center"
    )
    sent = app.requests[-1]
    assert sent["_path"] == "/siap/dr2/query"
    assert sent["INTERSECT"] == seed["INTERSECT"].upper() == "CENTER"
    assert [float(x) for x in sent["POS"].split(",")] == [float(x) for x in seed["POS"].split(",")]
    assert [round(float(x), 6) for x in sent["SIZE"].split(",")] == [0.17, 0.17] and sent["FORMAT"] == seed["FORMAT"]
    c = np.cos(np.radians(DEC0))
    expected = sorted(
        i["unique_image_id"]
        for i in synthetic_images()
        if abs((i["ra"] - RA0) * c) <= i["w"] / 2 and abs(i["dec"] - DEC0) <= i["h"] / 2
    )
    t = res.to_table()
    assert sorted(t["title"]) == expected and len(expected) > 0
    assert all(u.startswith(emu[1] + "/siap/dr2/get_image?") for u in t["access_url"])
    import requests

    got = requests.get(t["access_url"][0])  # the SIA 1.0 access reference downloads the image
    assert got.status_code == 200 and got.content[:6] == b"SIMPLE"
    overlaps = pyvo.dal.SIAService(gw_images[1] + "/sia1?").search((RA0, DEC0), size=0.17, intersect="overlaps")
    assert app.requests[-1]["INTERSECT"] == "OVERLAPS"
    expected = sorted(
        i["unique_image_id"]
        for i in synthetic_images()
        if abs((i["ra"] - RA0) * c) <= (i["w"] + 0.17) / 2 and abs(i["dec"] - DEC0) <= (i["h"] + 0.17) / 2
    )
    assert sorted(overlaps.to_table()["title"]) == expected


def test_datalink_and_soda_cutouts_through_get_image(gw_images, emu):
    import requests
    from astropy.io import fits
    from astropy.wcs import WCS

    url = gw_images[1]
    did = "ivo://skymapper.anu.edu.au/dr2?2014041012020021-10"
    r = requests.get(url + "/datalink/links", params={"ID": did})
    links, status, _ = parse_votable(r.content)
    assert status == "OK" and list(links["semantics"]) == ["#this", "#cutout"]
    assert f'value="{url}/soda/sm/sync"'.encode() in r.content
    r = requests.get(url + "/soda/sm/sync", params={"ID": did, "POS": "CIRCLE 33.64 -0.77 0.05"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/fits"
    hdu = fits.open(io.BytesIO(r.content))[0]
    assert hdu.header["IMAGEID"] == "2014041012020021-10"
    assert np.allclose(WCS(hdu.header).wcs.crval, [33.64, -0.77])
    assert emu[0].requests[-1]["SIZE"] == "0.1,0.1" and emu[0].requests[-1]["IMAGE"] == "2014041012020021-10"
    r = requests.get(url + "/soda/sm/sync", params={"ID": did, "CIRCLE": "33.64 -0.77 0.1"})
    assert r.status_code == 400 and r.text.startswith("UsageError") and "0.17 deg" in r.text
    r = requests.get(url + "/soda/sm/sync", params={"ID": did[:-2] + "99", "CIRCLE": "33.64 -0.77 0.01"})
    assert r.status_code == 400 and "unknown IMAGE" in r.text


def test_sia2_time_becomes_the_mjd_range(gw_images, emu):
    import pyvo
    from astropy.time import Time
    from emulators.skymapper import synthetic_images

    app, _ = emu
    res = pyvo.dal.SIA2Service(gw_images[1] + "/sia/query", check_baseurl=False).search(
        pos=(RA0, DEC0, 0.05), time=(Time(56771.0, format="mjd"), Time(56772.0, format="mjd"))
    )
    sent = app.requests[-1]
    assert float(sent["MJD_START"]) == 56771.0 and float(sent["MJD_END"]) == 56772.0 and "BAND" not in sent
    t = res.to_table()
    assert len(t) == 12 and all(56771.0 <= v <= 56772.0 for v in t["t_min"])
    assert sorted(t["obs_id"]) == sorted(
        i["unique_image_id"]
        for i in synthetic_images()
        if 56771.0 <= i["mjd_obs"] <= 56772.0 and abs(i["dec"] - DEC0) < 1
    )
