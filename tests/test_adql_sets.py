"""ADQL 2.1 set operations (§2.2.4: UNION [ALL], EXCEPT, INTERSECT of whole SELECTs; an
ORDER BY after the last SELECT sorts the combined rows; TOP stays with its SELECT) and WITH
(§2.2.5, common table expressions): result metadata, mistakes, the TAPRegExt declaration with
the lower-case IVOIDs, and the planner over MAST (issue 19).  Their results on the embedded
archive, through the ivoa kind and through the planner over a REST archive are in the table of
``tests/test_adql_conformance.py``."""

from xml.etree import ElementTree as ET

import numpy as np
import pyarrow.parquet as pq
import pytest

from gateway.testing import make_app, parse_votable, serve

STARS = pq.read_table("data/demo/sdss_stars.parquet").to_pandas()
RR = pq.read_table("data/demo/s82_rrlyrae.parquet").to_pandas()


def run(client, q, **extra):
    r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": q, "MAXREC": 100000, **extra})
    t, status, _ = parse_votable(r.data)
    assert r.status_code == 200 and status == "OK", r.data[-400:]
    return t


def test_result_names_and_metadata_come_from_the_first_select(client):
    t = run(
        client, "SELECT TOP 1 ra AS x, objid FROM demo.sdss_stars UNION ALL SELECT TOP 1 ra, id FROM demo.s82_rrlyrae"
    )
    assert t.colnames == ["x", "objid"] and len(t) == 2
    assert str(t["x"].unit) == "deg"  # the same declared metadata on both sides (ra, deg, pos.eq.ra)
    assert t["objid"].description is None  # objid and id differ: typed by the engine, neither's metadata
    same = run(client, "SELECT TOP 1 ra FROM demo.sdss_stars UNION ALL SELECT TOP 1 ra FROM demo.sdss_stars")
    assert str(same["ra"].unit) == "deg" and len(same) == 2


@pytest.mark.parametrize(
    "query, says",
    [
        ("SELECT ra FROM demo.sdss_stars UNION SELECT ra, dec FROM demo.sdss_stars", "give 1 and 2 columns"),
        (
            "SELECT ra FROM demo.sdss_stars UNION SELECT ra FROM demo.sdss_stars ORDER BY dec",
            "sorts by the result's column names (ra) or positions",
        ),
        ("SELECT ra FROM demo.sdss_stars UNION SELECT nosuch FROM demo.sdss_stars", "nosuch"),
        ("WITH w AS (SELECT ra FROM demo.sdss_stars) SELECT dec FROM w", "dec"),
        (
            "WITH w AS (SELECT ra FROM demo.sdss_stars), w AS (SELECT dec FROM demo.sdss_stars) SELECT ra FROM w",
            "WITH names w twice",
        ),
    ],
)
def test_set_operation_mistakes(client, query, says):
    r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": query})
    assert r.status_code == 400 and says in r.data.decode()


@pytest.mark.parametrize(
    "group, forms", [("adql-sets", ["UNION", "EXCEPT", "INTERSECT"]), ("adql-common-table", ["WITH"])]
)
def test_declared_with_the_lower_case_ivoid(client, group, forms):
    caps = ET.fromstring(client.get("/tap/capabilities").data)
    got = [
        f[0].text
        for lf in caps.iter()
        if lf.tag.endswith("languageFeatures") and lf.get("type") == f"ivo://ivoa.net/std/tapregext#features-{group}"
        for f in lf
    ]
    assert got == forms


def test_set_operations_and_with_over_a_scanning_archive(tmp_path):
    """MAST scans (no ADQL upstream): UNION and WITH are evaluated by the gateway's planner
    over the rows of each branch's cone (ADQL 2.1 §2.2.4, §2.2.5)."""
    from emulators.mast import mast_app

    with serve(mast_app()) as base:
        app = make_app(
            {
                "archives": {"mast": {"kind": "mast", "base_url": base + "/api/v0.1", "metadata_cache": None}},
                "jobs": {"store": f"sqlite:///{tmp_path}/j.sqlite", "results_dir": str(tmp_path / "r")},
            },
            load_entrypoints=True,
        )
        try:
            data = app_table = None
            from emulators.mast import synthetic

            data = synthetic("hsc/v3/summary/magaper2")
            ra, dec, ids = (data[c].to_numpy() for c in ("MatchRA", "MatchDec", "MatchID"))

            def within(a, d, r):
                h = (
                    np.sin(np.radians(dec - d) / 2) ** 2
                    + np.cos(np.radians(dec)) * np.cos(np.radians(d)) * np.sin(np.radians(ra - a) / 2) ** 2
                )
                return np.degrees(2 * np.arcsin(np.sqrt(h))) <= r

            cone = "1 = CONTAINS(POINT('ICRS', MatchRA, MatchDec), CIRCLE('ICRS', 16.2, 2.12, 0.05))"
            cone2 = "1 = CONTAINS(POINT('ICRS', MatchRA, MatchDec), CIRCLE('ICRS', 16.22, 2.12, 0.05))"
            r = app.test_client().post(
                "/tap/sync",
                data={
                    "LANG": "ADQL",
                    "QUERY": f"SELECT MatchID FROM mast_hsc3.summary_magaper2 WHERE {cone} UNION "
                    f"SELECT MatchID FROM mast_hsc3.summary_magaper2 WHERE {cone2}",
                    "RESPONSEFORMAT": "csv",
                },
            )
            assert r.status_code == 200, r.data
            got = sorted(int(x) for x in r.data.decode().split()[1:])
            want = sorted(ids[within(16.2, 2.12, 0.05) | within(16.22, 2.12, 0.05)].tolist())
            assert got == want and len(want) > 10
            app_table = app.test_client().post(
                "/tap/sync",
                data={
                    "LANG": "ADQL",
                    "RESPONSEFORMAT": "csv",
                    "QUERY": f"WITH m AS (SELECT MatchID FROM mast_hsc3.summary_magaper2 WHERE {cone}) SELECT MatchID FROM m",
                },
            )
            assert sorted(int(x) for x in app_table.data.decode().split()[1:]) == sorted(ids[within(16.2, 2.12, 0.05)])
        finally:
            app.extensions["vo_gateway"].jobs.close()
