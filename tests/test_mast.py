"""Kind ``mast`` (plugins/mast) against the MAST catalogs API emulation (issue 5): the seed
notebook's IC 1613 query, exact residuals, paging, the Pan-STARRS JSON-body rule, limits."""

import numpy as np
import pytest
from emulators.mast import IC1613, PS1_FIELD, mast_app

from gateway.sky import separation as _sep
from gateway.testing import make_app, parse_votable, serve

SEED = (
    "https://catalogs.mast.stsci.edu/api/v0.1/hsc/v3/summary/magaper2.csv?A_F475W_N.gte=10&A_F814W_N.gte=10"
    "&ra=16.2016962&dec=2.1194959&radius=0.5&columns=%5BMatchID%2CMatchRA%2CMatchDec%2CNumFilters%2CNumVisits"
    "%2CNumImages%2CStartMJD%2CStopMJD%2CA_F475W%2CA_F475W_N%2CA_F475W_MAD%2CA_F814W%2CA_F814W_N%2CA_F814W_MAD%5D"
)


@pytest.fixture(scope="module")
def emu():
    app = mast_app()
    with serve(app) as base:
        yield app, base


@pytest.fixture(scope="module")
def gw(emu, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mast")
    app = make_app(
        {
            "archives": {
                "mast": {
                    "kind": "mast",
                    "base_url": emu[1] + "/api/v0.1",
                    "pagesize": 400,
                    "hla_url": emu[1] + "/cgi-bin/fitscut.cgi",
                    "ps1_images_url": emu[1] + "/ps1",
                    "metadata_cache": str(tmp / "mast_metadata.json"),
                }
            },
            "jobs": {"store": f"sqlite:///{tmp}/j.sqlite", "results_dir": str(tmp / "r")},
        },
        load_entrypoints=True,
    )
    yield app.test_client()
    app.extensions["vo_gateway"].jobs.close()


def tap(c, q, **extra):
    r = c.get("/tap/sync", query_string={"LANG": "ADQL", "QUERY": q, **extra})
    return r, (parse_votable(r.data) if r.status_code == 200 else (None, None, None))


def test_seed_variables_query_sends_the_notebook_request(gw, emu):
    from urllib.parse import parse_qs, urlsplit

    app, _ = emu
    cols = (
        "MatchID, MatchRA, MatchDec, NumFilters, NumVisits, NumImages, StartMJD, StopMJD, A_F475W, A_F475W_N, "
        "A_F475W_MAD, A_F814W, A_F814W_N, A_F814W_MAD"
    )
    q = (
        f"SELECT {cols} FROM mast_hsc3.summary_magaper2 WHERE 1 = CONTAINS(POINT('ICRS', MatchRA, MatchDec), "
        "CIRCLE('ICRS', 16.2016962, 2.1194959, 0.5)) AND A_F475W_N >= 10 AND A_F814W_N >= 10"
    )
    r, (t, status, _) = tap(gw, q, MAXREC=100000)
    assert r.status_code == 200 and status == "OK"
    path, method, sent = app.requests[-1]
    seed = parse_qs(urlsplit(SEED).query)
    assert path == "hsc/v3/summary/magaper2" and method == "GET"
    for k in ("A_F475W_N.gte", "A_F814W_N.gte", "ra", "dec", "radius", "columns"):
        assert sent[k] == seed[k], k
    full = app.table("hsc/v3/summary/magaper2")
    d = _sep(full["MatchRA"].to_numpy(), full["MatchDec"].to_numpy(), *IC1613)
    n475, n814 = (full[c].fill_null(-1).to_numpy() for c in ("A_F475W_N", "A_F814W_N"))
    expected = sorted(np.array(full["MatchID"])[(d <= 0.5) & (n475 >= 10) & (n814 >= 10)])
    assert sorted(t["MatchID"]) == expected and len(expected) > 400  # more than one page of 400
    assert any(s.get("page") == ["2"] for _, _, s in app.requests)


def test_light_curve_of_one_match(gw, emu):
    app, _ = emu
    full = app.table("hsc/v3/detailed")
    mid = full["MatchID"][0].as_py()
    q = (
        f"SELECT MatchID, SourceID, StartMJD, Detector, Filter, MagAper2, Flags, ImageName FROM mast_hsc3.detailed "
        f"WHERE MatchID = {mid} AND Detector = 'ACS/WFC' AND Filter = 'F475W' ORDER BY StartMJD"
    )
    r, (t, status, _) = tap(gw, q)
    sent = app.requests[-1][2]
    assert sent["MatchID"] == [str(mid)] and sent["Filter"] == ["F475W"] and sent["sort_by"] == ["StartMJD"]
    rows = [r for r in full.to_pylist() if r["MatchID"] == mid and r["Filter"] == "F475W"]
    assert list(t["StartMJD"]) == sorted(r["StartMJD"] for r in rows) and len(rows) > 1


def test_what_the_api_cannot_express_is_evaluated_exactly(gw, emu):
    app, _ = emu
    q = (
        "SELECT objID, gMeanPSFMag - rMeanPSFMag AS gr FROM mast_ps1dr2.mean WHERE "
        "DISTANCE(POINT('ICRS', raMean, decMean), POINT('ICRS', 210.802429, 54.34875)) < 0.2 "
        "AND (gMeanPSFMag < 17 OR rMeanPSFMag > 25) AND nDetections IN (" + ", ".join(map(str, range(30))) + ") "
        "ORDER BY gr DESC"
    )
    r, (t, status, _) = tap(gw, q)
    path, method, sent = app.requests[-1]
    assert path == "panstarrs/dr2/mean" and method == "POST"  # JSON body, never a form (HTTP 422)
    assert sent["nDetections"] == list(range(30)) and "sort_by" not in sent
    full = app.table("panstarrs/dr2/mean")
    d = _sep(full["raMean"].to_numpy(), full["decMean"].to_numpy(), *PS1_FIELD)
    g, rr = (np.array(full[c].to_pylist(), dtype=float) for c in ("gMeanPSFMag", "rMeanPSFMag"))
    nd = full["nDetections"].to_numpy()
    with np.errstate(invalid="ignore"):
        keep = (d < 0.2) & ((g < 17) | (rr > 25)) & np.isin(nd, list(range(30))) & ~np.isnan(g - rr)
    exp_ids = np.array(full["objID"])[keep][np.argsort(-(g - rr)[keep], kind="stable")]
    got = [x for x, v in zip(t["objID"], t["gr"]) if v is not np.ma.masked]
    assert got == list(exp_ids) and len(got) > 0


def test_null_sentinels_limits_and_unbounded_queries(gw, emu):
    r, (t, _, _) = tap(
        gw,
        "SELECT TOP 50 objID, gMeanPSFMag FROM mast_ps1dr2.mean WHERE "
        "1=CONTAINS(POINT('ICRS', raMean, decMean), CIRCLE('ICRS', 210.8, 54.35, 0.3))",
    )
    assert t["gMeanPSFMag"].mask.any() and not (t["gMeanPSFMag"] == -999).any()  # -999 became null
    assert emu[0].requests[-1][2]["pagesize"] == [50]  # TOP pushed down as pagesize when exact
    r, _ = tap(
        gw,
        "SELECT objID FROM mast_ps1dr2.mean WHERE 1=CONTAINS(POINT('ICRS', raMean, decMean), "
        "CIRCLE('ICRS', 210.8, 54.35, 0.7))",
    )
    assert r.status_code == 400 and b"at most 0.5 deg" in r.data
    r, _ = tap(gw, "SELECT objID FROM mast_ps1dr2.mean WHERE gMeanPSFMag < 15")
    assert r.status_code == 400 and b"add a position" in r.data and b"objID = " in r.data
    r, (t, status, _) = tap(
        gw,
        "SELECT objID FROM mast_ps1dr2.mean WHERE 1=CONTAINS(POINT('ICRS', raMean, decMean), "
        "CIRCLE('ICRS', 210.8, 54.35, 0.3))",
        MAXREC=10,
    )
    assert len(t) == 10 and status == "OVERFLOW"


def test_scs_on_every_positional_table(gw, emu):
    for table, (ra, dec) in (("mast_hsc3.summary_magaper2", IC1613), ("mast_ps1dr2.mean", PS1_FIELD)):
        r = gw.get(f"/scs/{table}", query_string={"RA": ra, "DEC": dec, "SR": 0.05})
        assert r.status_code == 200 and b"ID_MAIN" in r.data
        sent = emu[0].requests[-1][2]
        assert float(sent["radius"][0]) == 0.05
        import io

        import numpy as np
        from astropy.coordinates import SkyCoord
        from astropy.io.votable import parse_single_table

        got = parse_single_table(io.BytesIO(r.data), verify="ignore").to_table()
        path = "hsc/v3/summary/magaper2" if table.startswith("mast_hsc3") else "panstarrs/dr2/mean"
        truth = emu[0].table(path)
        idc, rac, decc = (
            ("MatchID", "MatchRA", "MatchDec") if table.startswith("mast_hsc3") else ("objID", "raMean", "decMean")
        )
        sep = (
            SkyCoord(np.asarray(truth[rac]), np.asarray(truth[decc]), unit="deg")
            .separation(SkyCoord(ra, dec, unit="deg"))
            .deg
        )
        want = set(np.asarray(truth[idc])[sep <= 0.05].tolist())
        assert {int(x) for x in got[idc].tolist()} == want and len(want) > 0  # SCS ids may be char


def test_seed_flow_is_in_the_examples_and_runs(gw):
    from xml.etree import ElementTree as ET

    doc = gw.get("/tap/examples").data.decode()
    assert 'id="hsc_ic1613_variables"' in doc and 'id="hsc_light_curve"' in doc
    root = ET.fromstring(doc)
    queries = {
        e.get("id"): "".join(q.itertext())
        for e in root.iter()
        if e.get("id") in ("hsc_ic1613_variables", "hsc_light_curve")
        for q in e.iter()
        if q.get("property") == "query"
    }
    assert len(queries) == 2
    for key, q in queries.items():
        r, (t, status, _) = tap(gw, q, MAXREC=100000)
        assert r.status_code == 200 and status == "OK", key


def test_summary_rows_link_to_their_light_curves(emu, tmp_path):
    """pyvo finds each summary row's DataLink (a service descriptor on the MatchID column) and
    through it the light curve, in sync and async results."""
    import pyvo

    app = make_app(
        {
            "archives": {"mast": {"kind": "mast", "base_url": emu[1] + "/api/v0.1", "metadata_cache": None}},
            "jobs": {"store": f"sqlite:///{tmp_path}/j.sqlite", "results_dir": str(tmp_path / "r")},
        },
        load_entrypoints=True,
    )
    try:
        with serve(app) as url:
            tap = pyvo.dal.TAPService(url + "/tap")
            q = (
                "SELECT TOP 3 MatchID, A_F475W_N FROM mast_hsc3.summary_magaper2 WHERE 1=CONTAINS(POINT('ICRS', "
                "MatchRA, MatchDec), CIRCLE('ICRS', 16.2016962, 2.1194959, 0.3)) AND A_F475W_N >= 3 ORDER BY MatchID"
            )
            for res in (tap.run_sync(q), tap.run_async(q)):
                assert len(res) == 3
                links = next(res.iter_datalinks())
                lc = next(r for r in links if r.semantics == "#auxiliary")
                curve = pyvo.dal.DALResults.from_result_url(lc.access_url).to_table()
                mid = res.to_table()["MatchID"][0]
                expected = [r for r in emu[0].table("hsc/v3/detailed").to_pylist() if r["MatchID"] == mid]
                assert len(curve) == len(expected) > 0 and set(curve["MatchID"]) == {mid}
                assert list(curve["Filter"]) == sorted(curve["Filter"])
            r = __import__("requests").get(url + "/datalink/mast/links", params={"ID": "not-a-match"})
            assert b"not an HSC MatchID" in r.content
    finally:
        app.extensions["vo_gateway"].jobs.close()


def test_hla_images_sia2_datalink_and_soda(gw, emu):
    import io

    from astropy.io import fits

    app, base = emu
    r = gw.get(
        "/sia/query", query_string={"POS": f"CIRCLE {IC1613[0]} {IC1613[1]} 0.05", "MAXREC": 1000, "COLLECTION": "HLA"}
    )
    t, status, _ = parse_votable(r.data)
    full = app.table("hsc/v3/detailed")
    d = _sep(full["MatchRA"].to_numpy(), full["MatchDec"].to_numpy(), *IC1613)
    expected = {n for n, keep in zip(full["ImageName"].to_pylist(), d <= 0.05) if keep}
    assert status == "OK" and set(t["obs_id"]) == expected and len(expected) > 1
    assert all(u.startswith(base + "/cgi-bin/fitscut.cgi?red=") for u in t["access_url"])
    import requests

    got = requests.get(t["access_url"][0])  # the SIA 2.0 access_url downloads the image
    assert got.status_code == 200 and got.content[:6] == b"SIMPLE"
    r = gw.get(
        "/sia/query",
        query_string={"POS": f"CIRCLE {IC1613[0]} {IC1613[1]} 0.05", "BAND": "7e-7 9e-7", "COLLECTION": "HLA"},
    )
    red = parse_votable(r.data)[0]
    assert set(red["obs_id"]) == {n for n in expected if n.endswith("f814w")} and 0 < len(red) < len(t)
    did = "ivo://mast.stsci.edu/hla?" + sorted(expected)[0]
    links, _, _ = parse_votable(gw.get("/datalink/links", query_string={"ID": did}).data)
    assert list(links["semantics"]) == ["#this", "#preview", "#cutout"]
    r = gw.get("/soda/mast/sync", query_string={"ID": did, "CIRCLE": f"{IC1613[0]} {IC1613[1]} 0.001"})
    assert r.status_code == 200 and r.mimetype == "application/fits"
    hdu = fits.open(io.BytesIO(r.data))[0]
    assert hdu.data.shape == (144, 144) and hdu.header["HLANAME"] == did.split("?", 1)[1]  # 7.2" at 0.05"/px
    r = gw.get("/soda/mast/sync", query_string={"ID": did, "CIRCLE": f"{IC1613[0]} {IC1613[1]} 0.1"})
    assert r.status_code == 400 and b"pixels across" in r.data


def test_ps1_images_stack_and_warp_each_band(gw, emu):
    import io

    from astropy.io import fits

    app, base = emu
    r = gw.get("/sia/query", query_string={"POS": "CIRCLE 83.63321 22.01446 0.01", "COLLECTION": "PS1 DR2"})
    t, status, _ = parse_votable(r.data)
    sent = next(p for kind, _, p in reversed(app.requests) if kind == "ps1filenames")
    assert sent == {"ra": "83.63321", "dec": "22.01446", "filters": "grizy", "type": "stack,warp"}
    stacks = sorted(n for n, lvl in zip(t["obs_id"], t["calib_level"]) if lvl == 3)
    recorded = sorted(
        line.split()[8]
        for line in open("tests/fixtures/mast/ps1filenames_ra83.633210_dec22.014460_RECONSTRUCTED.txt")
        .read()
        .splitlines()[1:]
    )
    assert stacks == recorded and len(t) == 5 + 10  # five stacks, two warps per band
    assert all(u.startswith(base + "/ps1/rings.v3.skycell/1784/059/") for u in t["access_url"])
    r = gw.get(
        "/sia/query",
        query_string={
            "POS": "CIRCLE 83.63321 22.01446 0.01",
            "COLLECTION": "PS1 DR2",
            "BAND": "5.6e-7 6.8e-7",
            "TIME": "56000 57000",
        },
    )
    only, _, _ = parse_votable(r.data)
    assert list(only["obs_id"]) == ["rings.v3.skycell.1784.059.wrp.r.56300.5.fits"]
    did = "ivo://mast.stsci.edu/ps1?/rings.v3.skycell/1784/059/rings.v3.skycell.1784.059.stk.g.unconv.fits"
    links, _, _ = parse_votable(gw.get("/datalink/links", query_string={"ID": did}).data)
    assert list(links["semantics"]) == ["#this", "#cutout"]
    r = gw.get("/soda/mast/sync", query_string={"ID": did, "CIRCLE": "83.63321 22.01446 0.005"})
    hdu = fits.open(io.BytesIO(r.data))[0]
    assert r.status_code == 200 and hdu.data.shape == (144, 144)  # 36" at 0.25"/px
    assert hdu.header["PS1FILE"] == did.split("?", 1)[1]


def test_metadata_from_the_api_cached_for_offline_starts(emu, tmp_path):
    import json

    cache = tmp_path / "meta.json"

    def build(base):
        return make_app(
            {
                "archives": {"mast": {"kind": "mast", "base_url": base + "/api/v0.1", "metadata_cache": str(cache)}},
                "jobs": {"store": f"sqlite:///{tmp_path}/j.sqlite", "results_dir": str(tmp_path / "r")},
            },
            load_entrypoints=True,
        )

    n = len(emu[0].requests)
    app = build(emu[1])
    fetched = sorted(p for p, kind, _ in emu[0].requests[n:] if kind == "metadata")
    app.extensions["vo_gateway"].jobs.close()
    assert len(fetched) == 16 and cache.exists() and sorted(json.loads(cache.read_text())) == fetched
    tables = {t.qualified_name: t for _, t in app.extensions["vo_gateway"].catalogue.tables()}
    ps1 = tables["mast_ps1dr2.mean"]
    assert ps1.column("gMeanPSFMag").unit == "mag" and ps1.column("objName").ucd == "meta.id;meta.main"
    api = json.loads(cache.read_text())["hsc/v3/propermotions"]
    assert [c.name for c in tables["mast_hsc3.propermotions"].columns] == [m["name"] for m in api]
    offline = build("http://127.0.0.1:9")  # MAST unreachable: the cache is used
    t2 = {t.qualified_name: t for _, t in offline.extensions["vo_gateway"].catalogue.tables()}
    offline.extensions["vo_gateway"].jobs.close()
    assert [c.name for c in t2["mast_ps1dr2.mean"].columns] == [c.name for c in ps1.columns]
    n = len(emu[0].requests)
    build(emu[1]).extensions["vo_gateway"].jobs.close()  # a fresh cache is used without asking MAST
    assert not [p for p, kind, _ in emu[0].requests[n:] if kind == "metadata"]


def test_every_listed_table_is_served(gw, emu):
    app, _ = emu
    tables = [t for _, t in gw.application.extensions["vo_gateway"].catalogue.tables() if t.schema.startswith("mast_")]
    names = {t.qualified_name for t in tables}
    assert {
        "mast_hsc3.propermotions",
        "mast_hsc3.sourcepositions",
        "mast_hsc3.hcvsummary",
        "mast_hsc3.hcv",
        "mast_hsc2.summary_magaper2",
        "mast_hsc2.detailed",
        "mast_ps1dr1.mean",
        "mast_ps1dr2.stack",
        "mast_ps1dr2.detection",
        "mast_ps1dr2.forced_mean",
    } <= names
    for t in tables:
        if t.positional:
            ra, dec = IC1613 if t.schema.startswith("mast_hsc") else PS1_FIELD
            q = (
                f"SELECT TOP 3 {t.id_column} FROM {t.qualified_name} WHERE 1 = CONTAINS(POINT('ICRS', "
                f"{t.ra_column}, {t.dec_column}), CIRCLE('ICRS', {ra}, {dec}, 0.2))"
            )
        else:
            q = f"SELECT {t.id_column} FROM {t.qualified_name} WHERE {t.id_column} = 7007"
        r, (res, status, _) = tap(gw, q)
        assert r.status_code == 200 and status == "OK", (t.qualified_name, r.data[-300:])
        assert emu[0].requests[-1][0] == next(
            c.path
            for c in gw.application.extensions["vo_gateway"].catalogue.archives["mast"].config.catalogs
            if c.table == t.qualified_name
        )


def test_exact_pushdown_streams_pages_and_like(gw, emu):
    app, _ = emu
    q = (
        "SELECT MatchID, Filter, ImageName FROM mast_hsc3.detailed WHERE 1 = CONTAINS(POINT('ICRS', MatchRA, MatchDec), "
        "CIRCLE('ICRS', 16.2016962, 2.1194959, 0.5)) AND ImageName LIKE 'hst_10505_0%_f814w' ORDER BY MatchID"
    )
    n = len(app.requests)
    r, (t, status, _) = tap(gw, q, MAXREC=100000)
    sent = [p for _, _, p in app.requests[n:]]
    assert sent[0]["ImageName.like"] == ["hst_10505_0%_f814w"] and sent[0]["sort_by"] == ["MatchID"]
    assert len(sent) > 1 and all(p["pagesize"] == ["400"] for p in sent)  # several pages, streamed
    full = app.table("hsc/v3/detailed")
    d = _sep(full["MatchRA"].to_numpy(), full["MatchDec"].to_numpy(), *IC1613)
    expected = sorted(
        m
        for m, f, keep in zip(full["MatchID"].to_pylist(), full["Filter"].to_pylist(), d <= 0.5)
        if keep and f == "F814W"
    )
    assert list(t["MatchID"]) == expected and set(t["Filter"]) == {"F814W"}


@pytest.mark.parametrize(
    "params",
    [
        [("POS", "CIRCLE 16.2 2.12 0.001"), ("POS", "CIRCLE 16.3 2.12 0.001")],
        [("CIRCLE", "16.2 2.12 0.001"), ("CIRCLE", "16.3 2.12 0.001")],
        [("POS", "CIRCLE 16.2 2.12 0.001"), ("CIRCLE", "16.3 2.12 0.001")],
    ],
    ids=["two-POS", "two-CIRCLE", "POS-and-CIRCLE"],
)
def test_soda_sync_refuses_repeated_regions(gw, params):
    """SODA 1.0 §3.1: repeated region parameters on sync get MultiValuedParamNotSupported, on
    the proxied SODA (/soda/mast/sync) as on the gateway's own (/soda/sync)."""
    for path, did in (("/soda/mast/sync", "ivo://mast.stsci.edu/hla?x"), ("/soda/sync", "ivo://vo-gateway/demo?x")):
        r = gw.get(path, query_string=[("ID", did), *params])
        assert r.status_code == 400 and r.data.startswith(b"MultiValuedParamNotSupported"), (path, r.data)
