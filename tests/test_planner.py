"""The federated planner (issue 14): one ADQL query over the tables of several archives, and
TAP_UPLOAD against any archive, through one gateway over every archive kind, each against its
emulator: embedded (DuckDB), ivoa (a second vo-gateway as the upstream TAP service), hsc
(catalog-job API over PostgreSQL), mast (catalogs API) and skymapper (sm-cone).

Every row set is compared with a ground truth computed by astropy (``search_around_sky``) over
the emulators' own data, not only counted."""

import io
import itertools
import json
import os
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest
import requests
import yaml
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from conftest import ROOT, demo_config, needs_stilts
from emulators.hsc import CENTRES, hsc_app
from emulators.mast import mast_app
from emulators.skymapper import FIELDS, skymapper_app
from emulators.skymapper import synthetic as sm_synthetic

from gateway.testing import make_app, parse_votable, serve, taplint

F = FIELDS[0]  # the field every emulator holds rows in (SkyMapper's first)


def _nearest_gaia(ra0, dec0):
    t = pq.read_table(ROOT / "data/demo/gaia_dr3_g10.parquet", columns=["ra", "dec"])
    sep = SkyCoord(np.asarray(t["ra"]) * u.deg, np.asarray(t["dec"]) * u.deg).separation(
        SkyCoord(ra0 * u.deg, dec0 * u.deg)
    )
    i = int(np.argmin(sep))
    return float(t["ra"][i].as_py()), float(t["dec"][i].as_py())


G = _nearest_gaia(*F)
S = (
    200.45,
    36.85,
)  # the embedded SDSS field: SkyMapper's emulator holds rows there too  # a real G < 10 star 0.44 deg from F: HSC and MAST also hold rows around it
#: archive kind -> (ADQL table, id, ra, dec)
SIDES = {
    "embedded": ("demo.gaia_dr3_g10", "source_id", "ra", "dec"),
    "ivoa": ("mirror.gaia_dr3_g10", "source_id", "ra", "dec"),
    "hsc": ("hsc_s23b_wide.forced", "object_id", "ra", "dec"),
    "mast": ("mast_ps1dr2.mean", "objID", "raMean", "decMean"),
    "skymapper": ("skymapper_dr4.master", "object_id", "raj2000", "dej2000"),
}


@pytest.fixture(scope="module")
def fed(tmp_path_factory, postgres_url):
    """(base URL, Flask app, emulator apps by kind) of one gateway over every kind."""
    tmp = tmp_path_factory.mktemp("planner")
    os.environ["VO_GATEWAY_TEST_HSC_PASSWORD"] = "svc-pw"
    upstream = make_app(demo_config(tmp_path_factory.mktemp("mirror")), load_entrypoints=True)
    mast, sm = mast_app(extra_fields=[F, G]), skymapper_app(extra_fields=[S])
    hsc = hsc_app(postgres_url, users={"svc": "svc-pw"}, n=300, missing=(), centres=[*CENTRES, F, G])
    with serve(upstream) as up, serve(mast) as m, serve(sm) as s, serve(hsc) as h:
        cfg = demo_config(tmp)
        cfg["archives"]["mirror"] = {"kind": "ivoa", "tap_url": up + "/tap", "schemas": {"demo": "mirror"}}
        cfg["archives"]["mast"] = mast_archive(m)
        cfg["archives"]["skymapper"] = {"kind": "skymapper", "cone_url": s + "/sm-cone/public/query"}
        cfg["archives"]["hsc"] = {
            "kind": "hsc",
            "api_url": h + "/datasearch/api/catalog_jobs/",
            "release_version": "dr4",
            "schemas": {"s23b_wide": "hsc_s23b_wide"},
            "photoz_tables": ["photoz_mizuki"],
            "poll_initial": 0.01,
            "das_url": None,
            "psf_url": None,
            "account": {"username": "svc", "password": {"env": "VO_GATEWAY_TEST_HSC_PASSWORD"}},
        }
        app = make_app(cfg, load_entrypoints=True)
        app.config_file = tmp / "config.yaml"  # the same configuration, for the command line
        app.config_file.write_text(yaml.safe_dump({"cache": {"ttl": 0}, **cfg}))
        with serve(app) as url:
            yield url, app, {"mast": mast, "skymapper": sm, "hsc": hsc}
        app.extensions["vo_gateway"].jobs.close()
    upstream.extensions["vo_gateway"].jobs.close()


def mast_archive(base: str, **extra) -> dict:
    """The config of a kind-mast archive over the MAST emulator at ``base`` (catalogs API only)."""
    return {
        "kind": "mast",
        "base_url": base + "/api/v0.1",
        "metadata_cache": None,
        "hla_url": None,
        "ps1_images_url": None,
        **extra,
    }


def votable(table: Table, serialization: str = "tabledata") -> bytes:
    """``table`` as VOTable bytes, for a TAP_UPLOAD part."""
    buf = io.BytesIO()
    table.write(buf, format="votable", tabledata_format=serialization)
    return buf.getvalue()


def truth_rows(kind: str, emus) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, ra, dec) of an archive's table, from the emulator's data (or the demo Parquet)."""
    table, idc, rac, decc = SIDES[kind]
    if kind in ("embedded", "ivoa"):
        t = pq.read_table(ROOT / "data/demo/gaia_dr3_g10.parquet", columns=[idc, rac, decc])
    elif kind == "hsc":
        t = emus["hsc"].forced
    elif kind == "mast":
        t = emus["mast"].table("panstarrs/dr2/mean")
    else:
        t = sm_synthetic("dr4.master", extra_fields=[S])
    return (np.asarray(t[idc]).astype(np.int64), np.asarray(t[rac], dtype=float), np.asarray(t[decc], dtype=float))


def in_cone(ra, dec, cone):
    return SkyCoord(ra * u.deg, dec * u.deg).separation(SkyCoord(cone[0] * u.deg, cone[1] * u.deg)).deg <= cone[2]


def match_pairs(a, b, r) -> set[tuple[int, int]]:
    """Ground truth: (a id, b id) of every pair closer than r degrees (astropy)."""
    (ai, ar, ad), (bi, br, bd) = a, b
    if not len(ai) or not len(bi):
        return set()
    ib, ia, sep, _ = SkyCoord(ar * u.deg, ad * u.deg).search_around_sky(SkyCoord(br * u.deg, bd * u.deg), r * u.deg)
    keep = sep.deg < r
    return {(int(ai[i]), int(bi[j])) for i, j in zip(ia[keep], ib[keep])}


def subset(rows, mask):
    return tuple(x[mask] for x in rows)


def sync(url, query, fmt="votable", files=None, **extra):
    return requests.post(
        url + "/tap/sync",
        data={"LANG": "ADQL", "QUERY": query, "RESPONSEFORMAT": fmt, **extra},
        files=files,
        timeout=300,
    )


def pairs_of(r, a="aid", b="bid") -> set[tuple[int, int]]:
    assert r.status_code == 200, r.text[:2000]
    t, status, _ = parse_votable(r.content)
    assert status == "OK"
    return {(int(x), int(y)) for x, y in zip(t[a], t[b])}


def _join_query(ka, kb, cone, r, form):
    ta, ia, ra_a, de_a = SIDES[ka]
    tb, ib, ra_b, de_b = SIDES[kb]
    match = (
        f"1 = CONTAINS(POINT('ICRS', b.{ra_b}, b.{de_b}), CIRCLE('ICRS', a.{ra_a}, a.{de_a}, {r}))"
        if form == "contains"
        else f"DISTANCE(POINT('ICRS', a.{ra_a}, a.{de_a}), POINT('ICRS', b.{ra_b}, b.{de_b})) < {r}"
    )
    return (
        f"SELECT a.{ia} AS aid, b.{ib} AS bid FROM {ta} AS a JOIN {tb} AS b ON {match} "
        f"WHERE 1 = CONTAINS(POINT('ICRS', a.{ra_a}, a.{de_a}), CIRCLE('ICRS', {cone[0]}, {cone[1]}, {cone[2]}))"
    )


PAIRS = list(itertools.combinations(SIDES, 2))


@pytest.mark.parametrize("ka,kb", PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_cross_archive_join_equals_the_ground_truth(fed, ka, kb):
    url, _, emus = fed
    gaia = "embedded" in (ka, kb) or "ivoa" in (ka, kb)
    cone, r = ((G[0], G[1], 0.5), 0.03) if gaia else ((F[0], F[1], 0.1), 0.01)
    if ka in ("embedded", "ivoa") and kb in ("embedded", "ivoa"):
        cone, r = (G[0], G[1], 2.0), 0.3
    for first, second, form in ((ka, kb, "contains"), (kb, ka, "distance")):
        got = pairs_of(sync(url, _join_query(first, second, cone, r, form)))
        a = truth_rows(first, emus)
        want = match_pairs(subset(a, in_cone(a[1], a[2], cone)), truth_rows(second, emus), r)
        assert got == want and len(want) > 0, (first, second, len(got), len(want))


@pytest.mark.parametrize("kind", list(SIDES))
def test_upload_crossmatch_against_every_archive_kind(fed, kind):
    url, _, emus = fed
    ids, ra, dec = truth_rows(kind, emus)
    near = np.flatnonzero(in_cone(ra, dec, (F[0], F[1], 0.15 if kind not in ("embedded", "ivoa") else 1.0)))[:25]
    rng = np.random.default_rng(7)
    tra = np.concatenate([ra[near] + rng.normal(0, 1 / 3600, len(near)), F[0] + rng.uniform(-0.1, 0.1, 10)])
    tdec = np.concatenate([dec[near] + rng.normal(0, 1 / 3600, len(near)), F[1] + rng.uniform(-0.1, 0.1, 10)])
    targets = Table({"tid": np.arange(len(tra)), "ra": tra, "dec": tdec})
    vot = votable(targets)
    table, idc, rac, decc = SIDES[kind]
    r = 3 / 3600
    q = (
        f"SELECT u.tid AS aid, t.{idc} AS bid FROM TAP_UPLOAD.targets AS u JOIN {table} AS t "
        f"ON 1 = CONTAINS(POINT('ICRS', t.{rac}, t.{decc}), CIRCLE('ICRS', u.ra, u.dec, {r}))"
    )
    got = pairs_of(sync(url, q, UPLOAD="targets,param:t", files={"t": ("t.xml", vot)}))
    want = match_pairs((np.arange(len(tra)), tra, tdec), (ids, ra, dec), r)
    assert got == want and len(want) >= len(near)


@pytest.mark.parametrize(
    "cone",
    [(123.0, 89.6, 1.0), (0.3, 12.0, 1.5), (359.5, -20.0, 1.2), (40.0, -89.5, 1.0)],
    ids=["north-pole", "ra0", "ra360", "south-pole"],
)
def test_cones_at_the_poles_and_across_ra_zero(fed, cone):
    """embedded × ivoa: the mirror side is bounded by the demo side's rows (multi-cone) or
    cone, exactly, where RA wraps and at the poles."""
    url, _, emus = fed
    got = pairs_of(sync(url, _join_query("embedded", "ivoa", cone, 0.4, "distance")))
    a = truth_rows("embedded", emus)
    want = match_pairs(subset(a, in_cone(a[1], a[2], cone)), truth_rows("ivoa", emus), 0.4)
    assert got == want and len(want) > 3


def test_bounds_propagate_through_a_chain_of_crossmatches(fed):
    """upload -> hsc -> skymapper: each side bounded by the one before it; residual WHERE and
    ORDER BY evaluated locally."""
    url, _, emus = fed
    hid, hra, hdec = truth_rows("hsc", emus)
    sid, sra, sdec = truth_rows("skymapper", emus)
    targets = Table({"tid": [1, 2, 3], "ra": [F[0], F[0] + 0.05, F[0] - 0.04], "dec": [F[1], F[1] + 0.02, F[1]]})
    vot = votable(targets)
    q = (
        "SELECT u.tid, h.object_id AS aid, s.object_id AS bid FROM TAP_UPLOAD.t AS u "
        "JOIN hsc_s23b_wide.forced AS h ON DISTANCE(POINT('ICRS', u.ra, u.dec), POINT('ICRS', h.ra, h.dec)) < 0.03 "
        "JOIN skymapper_dr4.master AS s ON DISTANCE(POINT('ICRS', h.ra, h.dec), POINT('ICRS', s.raj2000, s.dej2000)) "
        "< 0.01 ORDER BY aid, bid"
    )
    r = sync(url, q, UPLOAD="t,param:t", files={"t": ("t.xml", vot)})
    got = pairs_of(r)
    step1 = match_pairs((targets["tid"].data, targets["ra"].data, targets["dec"].data), (hid, hra, hdec), 0.03)
    keep = np.isin(hid, [h for _, h in step1])
    want = match_pairs(subset((hid, hra, hdec), keep), (sid, sra, sdec), 0.01)
    assert got == want and len(want) > 0
    t, _, _ = parse_votable(r.content)
    assert list(zip(t["aid"], t["bid"])) == sorted(zip(t["aid"], t["bid"]))  # ORDER BY ran locally


def test_upload_against_hsc_forced_photometry_and_photoz(fed):
    """The README's "my targets: their HSC forced photometry and photo-z": one HSC-SSP job,
    the upload as a VALUES list joined by coneSearch; values equal the emulator's own rows."""
    url, app, emus = fed
    hid, hra, hdec = truth_rows("hsc", emus)
    near = np.flatnonzero(in_cone(hra, hdec, (F[0], F[1], 0.15)))[:20]
    targets = Table({"tid": np.arange(len(near)), "ra": hra[near] + 0.2 / 3600, "dec": hdec[near]})
    vot = votable(targets)
    q = (
        "SELECT u.tid AS aid, f.object_id AS bid, z.photoz_best FROM TAP_UPLOAD.mine AS u "
        "JOIN hsc_s23b_wide.forced AS f ON DISTANCE(POINT('ICRS', u.ra, u.dec), POINT('ICRS', f.ra, f.dec)) "
        "< 1.0/3600 JOIN hsc_s23b_wide.photoz_mizuki AS z ON z.object_id = f.object_id"
    )
    r = sync(url, q, UPLOAD="mine,param:t", files={"t": ("t.xml", vot)})
    got = pairs_of(r)
    want = match_pairs((targets["tid"].data, targets["ra"].data, targets["dec"].data), (hid, hra, hdec), 1 / 3600)
    assert got == want and len(want) >= len(near)
    t, _, _ = parse_votable(r.content)
    photoz = dict(zip(emus["hsc"].photoz["object_id"].to_pylist(), emus["hsc"].photoz["photoz_best"].to_pylist()))
    assert all(
        np.isclose(z, photoz[int(b)], equal_nan=True) or (z is np.ma.masked and photoz[int(b)] is None)
        for b, z in zip(t["bid"], t["photoz_best"])
    )
    plan = app.extensions["vo_gateway"].queries.explain(q, {"mine": _upload("mine", vot, app)})
    assert plan["federated"] is False and plan["archive"] == "hsc"  # one HSC job, the upload inlined
    sql = next(b["catalog_job"]["sql"] for v, b in reversed(emus["hsc"].requests) if v == "submit")
    assert "(VALUES (CAST(0 AS BIGINT), CAST(" in sql and "coneSearch(f.coord, u.ra, u.dec, (1.0 / 3600) * 3600)" in sql


def test_targets_against_the_hubble_source_catalog_and_their_light_curves(fed):
    """A target list x HSC v3 summary, then the light curves: through each summary row's
    DataLink (pyvo), and in one query joining mast_hsc3.detailed on MatchID (a key lookup)."""
    import pyvo

    url, _, emus = fed
    summary, detailed = emus["mast"].table("hsc/v3/summary/magaper2"), emus["mast"].table("hsc/v3/detailed")
    mid, mra, mdec = (np.asarray(summary[c]) for c in ("MatchID", "MatchRA", "MatchDec"))
    with_curve = np.isin(mid, np.asarray(detailed["MatchID"]))
    near = np.flatnonzero(in_cone(mra, mdec, (F[0], F[1], 0.2)) & with_curve)[:8]
    targets = Table({"tid": np.arange(len(near)), "ra": mra[near] + 0.3 / 3600, "dec": mdec[near]})
    tap = pyvo.dal.TAPService(url + "/tap")
    res = tap.run_sync(
        "SELECT u.tid, s.MatchID FROM TAP_UPLOAD.mine AS u JOIN mast_hsc3.summary_magaper2 AS s "
        "ON DISTANCE(POINT('ICRS', u.ra, u.dec), POINT('ICRS', s.MatchRA, s.MatchDec)) < 1.0/3600",
        uploads={"mine": targets},
    )
    got = {(int(a), int(b)) for a, b in zip(res.to_table()["tid"], res.to_table()["MatchID"])}
    assert got == match_pairs(
        (targets["tid"].data, targets["ra"].data, targets["dec"].data), (mid, mra, mdec), 1 / 3600
    )
    links = next(res.iter_datalinks(preserve_order=True))  # the first row's links
    curve = pyvo.dal.DALResults.from_result_url(next(r for r in links if r.semantics == "#auxiliary").access_url)
    first = int(res.to_table()["MatchID"][0])
    assert sorted(curve.to_table()["StartMJD"]) == sorted(
        r["StartMJD"] for r in detailed.to_pylist() if r["MatchID"] == first
    )
    lc = tap.run_sync(
        "SELECT u.tid, d.MatchID, d.Filter, d.StartMJD, d.MagAper2 FROM TAP_UPLOAD.mine AS u "
        "JOIN mast_hsc3.summary_magaper2 AS s ON DISTANCE(POINT('ICRS', u.ra, u.dec), "
        "POINT('ICRS', s.MatchRA, s.MatchDec)) < 1.0/3600 "
        "JOIN mast_hsc3.detailed AS d ON d.MatchID = s.MatchID ORDER BY u.tid, d.StartMJD",
        uploads={"mine": targets},
        maxrec=100000,
    ).to_table()
    matched = {b: a for a, b in got}
    want = sorted(
        (matched[r["MatchID"]], r["MatchID"], r["Filter"], r["StartMJD"])
        for r in detailed.to_pylist()
        if r["MatchID"] in matched
    )
    assert (
        sorted(zip(lc["tid"].tolist(), lc["MatchID"].tolist(), lc["Filter"].tolist(), lc["StartMJD"].tolist())) == want
    )
    assert len(want) > len(near)


def test_an_upload_beyond_hsc_s_row_limit_is_split_into_jobs(fed):
    """2,500 targets (HSC takes 2,000 uploaded rows per query here): planned, the targets go
    as two VALUES lists in two HSC jobs; the pairs equal astropy's."""
    url, _, emus = fed
    hid, hra, hdec = truth_rows("hsc", emus)
    rng = np.random.default_rng(21)
    near = np.flatnonzero(in_cone(hra, hdec, (F[0], F[1], 0.15)))
    pick = rng.choice(near, 2500)
    targets = Table(
        {
            "tid": np.arange(2500),
            "ra": hra[pick] + rng.normal(0, 0.3 / 3600, 2500),
            "dec": hdec[pick] + rng.normal(0, 0.3 / 3600, 2500),
        }
    )
    vot = votable(targets, "binary2")
    start = len(emus["hsc"].requests)
    q = (
        "SELECT u.tid AS aid, f.object_id AS bid FROM TAP_UPLOAD.t AS u JOIN hsc_s23b_wide.forced AS f "
        "ON 1 = CONTAINS(POINT('ICRS', f.ra, f.dec), CIRCLE('ICRS', u.ra, u.dec, 2.0/3600))"
    )
    got = pairs_of(sync(url, q, UPLOAD="t,param:t", MAXREC="100000", files={"t": ("t.xml", vot)}))
    want = match_pairs((targets["tid"].data, targets["ra"].data, targets["dec"].data), (hid, hra, hdec), 2 / 3600)
    assert got == want and len(want) >= 2000
    sqls = [b["catalog_job"]["sql"] for v, b in emus["hsc"].requests[start:] if v == "submit"]
    assert len(sqls) == 2 and all("AS gw_c(ra, dec, r)" in x for x in sqls)


def _upload(name, data, app):
    return app.extensions["vo_gateway"].queries.read_uploads([f"{name},param:x"], lambda part: io.BytesIO(data))[name]


def test_sdss_stars_against_skymapper_dr4(fed):
    """The seed's SDSS x SkyMapper: embedded SDSS stars in a cone, their SkyMapper DR4
    counterparts (one sm-cone request per star), equal to astropy's pairs."""
    url, _, emus = fed
    sdss = pq.read_table(ROOT / "data/demo/sdss_stars.parquet", columns=["objid", "ra", "dec"])
    a = (np.asarray(sdss["objid"]).astype(np.int64), np.asarray(sdss["ra"]), np.asarray(sdss["dec"]))
    cone, r = (S[0], S[1], 0.1), 20 / 3600
    q = (
        "SELECT s.objid AS aid, m.object_id AS bid FROM demo.sdss_stars AS s JOIN skymapper_dr4.master AS m "
        f"ON 1 = CONTAINS(POINT('ICRS', m.raj2000, m.dej2000), CIRCLE('ICRS', s.ra, s.dec, {r!r})) "
        f"WHERE 1 = CONTAINS(POINT('ICRS', s.ra, s.dec), CIRCLE('ICRS', {cone[0]}, {cone[1]}, {cone[2]}))"
    )
    got = pairs_of(sync(url, q))
    want = match_pairs(subset(a, in_cone(a[1], a[2], cone)), truth_rows("skymapper", emus), r)
    assert got == want and len(want) > 0


def test_grouping_and_outer_join_are_evaluated_locally(fed):
    """LEFT JOIN keeps a-rows without a partner (the null-supplying side takes only its ON
    conditions); GROUP BY counts partners per row."""
    url, _, emus = fed
    cone, r = (G[0], G[1], 1.2), 0.01  # some stars lie outside the emulated discs
    q = (
        "SELECT a.source_id AS aid, COUNT(b.objID) AS n FROM demo.gaia_dr3_g10 AS a LEFT JOIN mast_ps1dr2.mean AS b "
        f"ON DISTANCE(POINT('ICRS', a.ra, a.dec), POINT('ICRS', b.raMean, b.decMean)) < {r} AND b.nDetections >= 0 "
        f"WHERE 1 = CONTAINS(POINT('ICRS', a.ra, a.dec), CIRCLE('ICRS', {cone[0]}, {cone[1]}, {cone[2]})) "
        "GROUP BY a.source_id"
    )
    res = sync(url, q)
    assert res.status_code == 200, res.text
    t, _, _ = parse_votable(res.content)
    a = truth_rows("embedded", emus)
    inside = subset(a, in_cone(a[1], a[2], cone))
    pairs = match_pairs(inside, truth_rows("mast", emus), r)
    want = {int(i): sum(1 for x, _ in pairs if x == i) for i in inside[0]}
    assert {int(x): int(n) for x, n in zip(t["aid"], t["n"])} == want
    assert 0 in want.values() and max(want.values()) > 0


def test_an_unbounded_side_is_refused_naming_the_table_and_predicate(fed):
    url, _, _ = fed
    r = sync(
        url,
        "SELECT g.source_id, m.objID FROM demo.gaia_dr3_g10 AS g JOIN mast_ps1dr2.mean AS m "
        "ON g.phot_g_mean_mag = m.gMeanPSFMag",
    )
    assert r.status_code == 400
    _, status, _ = parse_votable(r.content)
    assert status == "ERROR"
    assert b"mast_ps1dr2.mean" in r.content and b"CONTAINS(POINT" in r.content and b"objID = " in r.content


def test_an_upstream_failure_fails_the_whole_query_with_its_message(fed):
    url, _, emus = fed
    q = _join_query("embedded", "mast", (F[0], F[1], 0.5), 0.6, "distance")  # 0.6 deg cones: MAST refuses
    r = sync(url, q)
    assert r.status_code == 400 and b"at most 0.5 deg" in r.content and b"QUERY_STATUS" in r.content


def test_explain_names_each_archive_request_and_the_local_part(fed, tmp_path):
    url, app, _ = fed
    gw = app.extensions["vo_gateway"]
    plan = gw.queries.explain(_join_query("embedded", "mast", (F[0], F[1], 0.5), 0.03, "distance"))
    assert plan["federated"] is True
    first, second = plan["steps"]
    assert first["archive"] == "demo" and first["fetch"] == "query" and "bounded by its own cone" in first["why"]
    assert "CONTAINS" in first["adql"] and "gaia_dr3_g10" in first["adql"]
    assert second["archive"] == "mast" and second["fetch"] == "scan" and second["stage"] == 2
    assert "one cone per row of a" in second["why"]
    assert plan["local"].startswith("DuckDB")
    single = gw.queries.explain("SELECT TOP 3 source_id FROM demo.gaia_dr3_g10")
    assert single == {
        "federated": False,
        "archive": "demo",
        "why": "every table is on this archive, which evaluates the whole query",
    }


def test_vo_gateway_explain_command(fed, tmp_path, capsys):
    from gateway.cli import main

    _, app, _ = fed
    targets = tmp_path / "t.csv"
    targets.write_text(f"tid,ra,dec\n1,{F[0]},{F[1]}\n2,{F[0] + 0.01},{F[1]}\n")
    q = (
        "SELECT u.tid, m.objID FROM TAP_UPLOAD.t AS u JOIN mast_ps1dr2.mean AS m "
        "ON DISTANCE(POINT('ICRS', u.ra, u.dec), POINT('ICRS', m.raMean, m.decMean)) < 0.001"
    )
    assert main(["explain", "--config", str(app.config_file), "--upload", f"t={targets}", q]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [(s["archive"], s["fetch"]) for s in plan["steps"]] == [("tap_upload", "upload"), ("mast", "scan")]
    assert "crossmatch with TAP_UPLOAD.t AS u" in plan["steps"][1]["why"]
    assert main(["explain", "--config", str(app.config_file), "SELECT x FROM mast_ps1dr2.nope"]) == 1
    assert "mast_ps1dr2.nope does not exist" in capsys.readouterr().err


def test_job_info_reports_progress_while_the_job_runs(tmp_path, postgres_url):
    """jobInfo is rewritten while the job executes (at least every 2 s): with a slow upstream
    (0.3 s per request, one at a time) the document shows sub-queries done rising."""
    import time
    from xml.etree import ElementTree as ET

    ids, ra, dec = truth_rows("mast", {"mast": mast_app(extra_fields=[F])})
    near = np.flatnonzero(in_cone(ra, dec, (F[0], F[1], 0.2)))[:12]
    cfg = demo_config(tmp_path)
    with serve(mast_app(extra_fields=[F], latency=0.3)) as m:
        cfg["archives"]["mast"] = mast_archive(m, max_concurrency=1)
        cfg["planner"] = {"cone_group_size": 0}  # one request per target, to count them
        app = make_app(cfg, load_entrypoints=True)
        with serve(app) as url:
            targets = Table({"tid": np.arange(len(near)), "ra": ra[near], "dec": dec[near]})
            vot = votable(targets)
            r = requests.post(
                url + "/tap/async",
                data={
                    "LANG": "ADQL",
                    "PHASE": "RUN",
                    "UPLOAD": "t,param:t",
                    "QUERY": "SELECT u.tid, m.objID FROM TAP_UPLOAD.t AS u JOIN mast_ps1dr2.mean AS m "
                    "ON DISTANCE(POINT('ICRS', u.ra, u.dec), POINT('ICRS', m.raMean, m.decMean)) < 0.0003",
                },
                files={"t": ("t.xml", vot)},
                allow_redirects=False,
                timeout=30,
            )
            job_url = r.headers["Location"]
            seen, phase, end = [], "", time.monotonic() + 60
            while phase not in ("COMPLETED", "ERROR") and time.monotonic() < end:
                doc = ET.fromstring(requests.get(job_url, timeout=30).content)
                phase = doc.find("{http://www.ivoa.net/xml/UWS/v1.0}phase").text
                node = doc.find("{http://www.ivoa.net/xml/UWS/v1.0}jobInfo/{urn:vo-gateway:jobinfo}info")
                info = json.loads(node.text) if node is not None else {}
                if phase == "EXECUTING" and "progress" in info:  # before the first report: the request id only
                    seen.append(info["progress"]["subqueries_done"])
                time.sleep(0.25)
            assert phase == "COMPLETED"
            final = json.loads(doc.find("{http://www.ivoa.net/xml/UWS/v1.0}jobInfo/{urn:vo-gateway:jobinfo}info").text)
            assert final["progress"]["subqueries_done"] == final["progress"]["subqueries_total"] == len(near) + 1
            assert len(set(seen)) >= 2 and seen == sorted(seen) and 0 < seen[-1] < len(near) + 1, seen
        app.extensions["vo_gateway"].jobs.close()


def test_async_federated_job_reports_progress_and_plan(fed):
    import pyvo

    url, _, emus = fed
    tap = pyvo.dal.TAPService(url + "/tap")
    job = tap.submit_job(_join_query("hsc", "mast", (F[0], F[1], 0.1), 0.01, "contains"))
    job.run()
    job.wait(phases=["COMPLETED", "ERROR"], timeout=120)
    assert job.phase == "COMPLETED", job.phase
    from xml.etree import ElementTree as ET

    doc = ET.fromstring(requests.get(f"{url}/tap/async/{job.job_id}").content)
    node = doc.find("{http://www.ivoa.net/xml/UWS/v1.0}jobInfo/{urn:vo-gateway:jobinfo}info")
    info = json.loads(node.text)
    assert info["progress"]["subqueries_done"] == info["progress"]["subqueries_total"] > 2
    assert info["progress"]["rows_fetched"] > 0
    assert [s["archive"] for s in info["plan"]["steps"]] == ["hsc", "mast"]
    got = {(int(a), int(b)) for a, b in zip(*(job.fetch_result().to_table()[c] for c in ("aid", "bid")))}
    a = truth_rows("hsc", emus)
    assert got == match_pairs(subset(a, in_cone(a[1], a[2], (F[0], F[1], 0.1))), truth_rows("mast", emus), 0.01)


def test_pyvo_async_upload_against_mast(fed):
    import pyvo

    url, _, emus = fed
    ids, ra, dec = truth_rows("mast", emus)
    near = np.flatnonzero(in_cone(ra, dec, (F[0], F[1], 0.2)))[:40]
    targets = Table({"tid": np.arange(len(near)), "ra": ra[near] + 0.5 / 3600, "dec": dec[near]})
    tap = pyvo.dal.TAPService(url + "/tap")
    res = tap.run_async(
        "SELECT u.tid AS aid, m.objID AS bid FROM TAP_UPLOAD.mine AS u JOIN mast_ps1dr2.mean AS m "
        "ON 1 = CONTAINS(POINT('ICRS', m.raMean, m.decMean), CIRCLE('ICRS', u.ra, u.dec, 0.0005))",
        uploads={"mine": targets},
    ).to_table()
    got = {(int(a), int(b)) for a, b in zip(res["aid"], res["bid"])}
    assert got == match_pairs((targets["tid"].data, targets["ra"].data, targets["dec"].data), (ids, ra, dec), 0.0005)
    assert len(got) >= len(near)


@needs_stilts
@pytest.mark.parametrize("kind", ["mast", "hsc", "skymapper", "ivoa"])
def test_stilts_tapskymatch_against_every_remote_kind(fed, tmp_path, kind):
    """STILTS tapskymatch (an ADQL upload join per block of rows) against MAST, HSC-SSP,
    SkyMapper and an upstream TAP (ivoa) table through the gateway: the ground-truth pairs."""
    url, _, emus = fed
    table, idc, rac, decc = SIDES[kind]
    ids, ra, dec = truth_rows(kind, emus)
    near = np.flatnonzero(in_cone(ra, dec, (G[0], G[1], 2.0) if kind == "ivoa" else (F[0], F[1], 0.15)))[:30]
    targets = Table({"tid": np.arange(len(near)), "ra": ra[near] + 0.4 / 3600, "dec": dec[near] - 0.3 / 3600})
    src = tmp_path / "targets.fits"
    targets.write(src)
    out = tmp_path / "out.csv"
    proc = subprocess.run(
        [
            "stilts",
            "tapskymatch",
            f"in={src}",
            "inlon=ra",
            "inlat=dec",
            f"tapurl={url}/tap",
            f"taptable={table}",
            f"taplon={rac}",
            f"taplat={decc}",
            "sr=0.0005",
            f"tapcols={idc}",
            "find=all",
            "sync=true",
            f"out={out}",
            "ofmt=csv",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got_t = Table.read(out, format="csv")
    got = {(int(a), int(b)) for a, b in zip(got_t["tid"], got_t[idc])}
    assert got == match_pairs((targets["tid"].data, targets["ra"].data, targets["dec"].data), (ids, ra, dec), 0.0005)
    assert len(got) >= len(near) > 3


@needs_stilts
def test_taplint_over_the_federated_planner_service(fed):
    """Metadata and capabilities of the whole service; taplint's query stages over the tables
    that answer a query without a position (MAST's and sm-cone's tables refuse
    ``SELECT TOP 1 *`` with a "too large to scan" error, tested above)."""
    bad, _ = taplint(
        fed[0] + "/tap",
        "TMV TME TMS TMC CAP AVV QGE QPO QAS MDQ UWS",
        "tables=demo.* mirror.* hsc_s23b_wide.forced TAP_SCHEMA.*",
    )
    assert bad == [], "\n".join(map(str, bad))


def test_ten_thousand_row_upload_against_a_rest_emulator(fed):
    """10,000 targets within 0.6 deg × MAST: exact, in one catalogs-API request per patch of
    sky (``planner.cone_group_size``) instead of one per target."""
    url, _, emus = fed
    start = len(emus["mast"].requests)
    ids, ra, dec = truth_rows("mast", emus)
    rng = np.random.default_rng(11)
    near = np.flatnonzero(in_cone(ra, dec, (F[0], F[1], 0.6)))
    pick = rng.choice(near, 10_000, replace=len(near) < 10_000)
    targets = Table(
        {
            "tid": np.arange(10_000),
            "ra": ra[pick] + rng.normal(0, 0.5 / 3600, 10_000),
            "dec": dec[pick] + rng.normal(0, 0.5 / 3600, 10_000),
        }
    )
    vot = votable(targets, "binary2")
    q = (
        "SELECT u.tid AS aid, m.objID AS bid FROM TAP_UPLOAD.t AS u JOIN mast_ps1dr2.mean AS m "
        "ON 1 = CONTAINS(POINT('ICRS', m.raMean, m.decMean), CIRCLE('ICRS', u.ra, u.dec, 0.0004))"
    )
    got = pairs_of(sync(url, q, UPLOAD="t,param:t", MAXREC="100000", files={"t": ("t.xml", vot)}))
    want = match_pairs((targets["tid"].data, targets["ra"].data, targets["dec"].data), (ids, ra, dec), 0.0004)
    assert got == want and len(want) >= 9_000
    cones = [p for path, _, p in emus["mast"].requests[start:] if path == "panstarrs/dr2/mean"]
    assert 100 < len(cones) < 2_000, len(cones)  # 1.13 deg² in cells of 0.05 deg: about 450


def test_every_published_example_runs_including_the_crossmatches(fed):
    """/tap/examples (DALI examples) of a gateway over every kind: pyvo reads them, each runs,
    and the cross-archive ones are there."""
    import pyvo

    url, _, _ = fed
    tap = pyvo.dal.TAPService(url + "/tap")
    examples = tap.examples
    queries = [ex["QUERY"] for ex in examples]
    assert sum("AS b ON 1 = CONTAINS" in q for q in queries) == 4
    for q in queries:
        r = sync(url, q, MAXREC="200")
        assert r.status_code == 200, (q, r.text[:1500])
        assert parse_votable(r.content)[1] in ("OK", "OVERFLOW")


def test_abort_cancels_every_running_sub_query(fed):
    """ABORT of a federated job: the HSC catalog job of its running stage is cancelled and
    deleted upstream, and the job ends ABORTED."""
    import time

    url, _, emus = fed
    hsc = emus["hsc"]
    hsc.polls_to_done = 10_000
    try:
        targets = Table({"tid": [1, 2], "ra": [F[0], F[0] + 0.01], "dec": [F[1], F[1]]})
        vot = votable(targets)
        q = (
            "SELECT u.tid, f.object_id, m.objID FROM TAP_UPLOAD.t AS u "
            "JOIN hsc_s23b_wide.forced AS f ON DISTANCE(POINT('ICRS', u.ra, u.dec), POINT('ICRS', f.ra, f.dec)) < 0.001 "
            "JOIN mast_ps1dr2.mean AS m ON DISTANCE(POINT('ICRS', u.ra, u.dec), POINT('ICRS', m.raMean, m.decMean)) "
            "< 0.001"
        )
        job = requests.post(
            url + "/tap/async",
            data={"LANG": "ADQL", "QUERY": q, "PHASE": "RUN", "UPLOAD": "t,param:t"},
            files={"t": ("t.xml", vot)},
            allow_redirects=False,
            timeout=30,
        ).headers["Location"]
        start = len(hsc.requests)
        t0 = time.monotonic()
        while not any(v == "status" for v, _ in hsc.requests[start:]):
            assert time.monotonic() - t0 < 20
            time.sleep(0.05)
        requests.post(job + "/phase", data={"PHASE": "ABORT"}, timeout=30)
        t0 = time.monotonic()
        while not {"cancel", "delete"} <= {v for v, _ in hsc.requests[start:]}:
            assert time.monotonic() - t0 < 20, hsc.requests[start:][-4:]
            time.sleep(0.05)
        assert requests.get(job + "/phase", timeout=30).text == "ABORTED"
    finally:
        hsc.polls_to_done = 2


def test_each_user_s_credentials_reach_only_their_sub_queries(tmp_path, postgres_url):
    """A federated query (embedded x HSC) runs HSC's part with the caller's own HSC account;
    no account: the 401 challenge; another user's query never uses the first's."""
    hsc = hsc_app(postgres_url, users={"alice": "a-pw", "bob": "b-pw"}, n=300, missing=(), centres=[*CENTRES, F, G])
    with serve(hsc) as h:
        cfg = demo_config(tmp_path)
        cfg["archives"]["hsc"] = {
            "kind": "hsc",
            "api_url": h + "/datasearch/api/catalog_jobs/",
            "release_version": "dr4",
            "schemas": {"s23b_wide": "hsc_s23b_wide"},
            "photoz_tables": [],
            "poll_initial": 0.01,
            "das_url": None,
            "psf_url": None,
        }
        app = make_app(cfg, load_entrypoints=True)
        with serve(app) as url:
            q = _join_query("embedded", "hsc", (G[0], G[1], 0.5), 0.03, "contains")
            none = requests.post(url + "/tap/sync", data={"LANG": "ADQL", "QUERY": q}, timeout=60)
            assert none.status_code == 401 and "WWW-Authenticate" in none.headers
            for user, pw in (("alice", "a-pw"), ("bob", "b-pw")):
                start = len(hsc.requests)
                r = requests.post(url + "/tap/sync", data={"LANG": "ADQL", "QUERY": q}, auth=(user, pw), timeout=60)
                assert r.status_code == 200, r.text[:500]
                names = {b["credential"]["account_name"] for _, b in hsc.requests[start:]}
                assert names == {user}
                assert pw.encode() not in r.content and b"a-pw" not in r.content
        app.extensions["vo_gateway"].jobs.close()


def test_uploads_are_forwarded_to_an_upstream_tap_sync_and_async(fed):
    """TAP_UPLOAD x an upstream TAP table (kind ivoa) goes to the upstream whole, the upload
    forwarded (TAP 1.1 §2.5.4), in sync and in async (the upstream's own UWS job)."""
    import pyvo

    url, app, emus = fed
    ids, ra, dec = truth_rows("ivoa", emus)
    near = np.flatnonzero(in_cone(ra, dec, (G[0], G[1], 3.0)))[:15]
    targets = Table({"tid": np.arange(len(near)), "ra": ra[near] + 1 / 3600, "dec": dec[near]})
    q = (
        "SELECT u.tid, g.source_id FROM TAP_UPLOAD.mine AS u JOIN mirror.gaia_dr3_g10 AS g "
        "ON 1 = CONTAINS(POINT('ICRS', g.ra, g.dec), CIRCLE('ICRS', u.ra, u.dec, 2.0/3600))"
    )
    vot = votable(targets)
    plan = app.extensions["vo_gateway"].queries.explain(q, {"mine": _upload("mine", vot, app)})
    assert plan == {
        "federated": False,
        "archive": "mirror",
        "why": "every table is on this archive, which evaluates the whole query",
    }
    want = match_pairs((targets["tid"].data, targets["ra"].data, targets["dec"].data), (ids, ra, dec), 2 / 3600)
    tap = pyvo.dal.TAPService(url + "/tap")
    for res in (tap.run_sync(q, uploads={"mine": targets}), tap.run_async(q, uploads={"mine": targets})):
        t = res.to_table()
        assert {(int(a), int(b)) for a, b in zip(t["tid"], t["source_id"])} == want and len(want) >= len(near)


def test_planned_queries_are_cached_per_caller(tmp_path):
    """A planned query on a remote archive is answered from the result cache the second time
    (no upstream call), never for another caller, and a different query misses."""
    cfg = demo_config(tmp_path, cache={"ttl": 300, "dir": str(tmp_path / "cache")})
    emu = mast_app(extra_fields=[F])

    def calls() -> int:
        return sum(1 for r in emu.requests if r[1] != "metadata")

    with serve(emu) as m:
        cfg["archives"]["mast"] = mast_archive(m)
        app = make_app(cfg, load_entrypoints=True)
        with serve(app) as url:
            q = _join_query("embedded", "mast", (G[0], G[1], 0.5), 0.03, "distance")

            def run(auth=None, query=q):
                r = requests.post(url + "/tap/sync", data={"LANG": "ADQL", "QUERY": query}, auth=auth, timeout=60)
                assert r.status_code == 200, r.text[:500]
                return pairs_of(r)

            first = run()
            n = calls()
            assert n > 0 and run() == first and calls() == n  # the same caller: from the cache
            assert run(auth=("bob", "pw")) == first and calls() > n  # another caller: fetched again
            n = calls()
            run(query=q.replace("< 0.03", "< 0.02"))
            assert calls() > n
        app.extensions["vo_gateway"].jobs.close()


@pytest.mark.parametrize("centre", [(33.6, -0.8), (0.01, 10.0), (359.99, -45.0), (120.0, 89.97), (250.0, -89.99)])
def test_covering_cones_contain_every_cone_and_share_dense_ones(centre):
    """gateway.sky.covering_cones: every input cone lies inside one output cone (checked with
    astropy separations), at RA 0/360 and the poles too; dense cones share; cell 0 keeps all."""
    from gateway.archive import Cone
    from gateway.sky import covering_cones

    rng = np.random.default_rng(int(centre[0] * 100 + centre[1]))
    n = 400
    c = SkyCoord(centre[0] * u.deg, centre[1] * u.deg)
    pts = c.directional_offset_by(rng.uniform(0, 360, n) * u.deg, np.sqrt(rng.uniform(0, 0.2**2, n)) * u.deg)
    cones = [Cone(float(a), float(d), float(r)) for a, d, r in zip(pts.ra.deg, pts.dec.deg, rng.uniform(1e-4, 3e-3, n))]
    out = covering_cones(cones, 0.05)
    assert len(out) < n / 2
    big = SkyCoord([o[0] for o in out] * u.deg, [o[1] for o in out] * u.deg)
    radii = np.array([o[2] for o in out])
    for cone, p in zip(cones, pts):
        assert np.any(p.separation(big).deg + cone.radius <= radii + 1e-9), cone
    assert all(0 <= o[0] < 360 and -90 <= o[1] <= 90 for o in out)
    assert covering_cones(cones, 0) == [(k.ra, k.dec, k.radius) for k in cones]
    far = [Cone(0.0, -30.0, 0.001), Cone(90.0, 0.0, 0.001)]
    assert covering_cones(far, 0.05) == [(k.ra, k.dec, k.radius) for k in far]
