"""Declared metadata: every column of every table has datatype, unit or none by design, a valid
UCD1+ (astropy's checker), a VOUnit and a description; TAP_SCHEMA agrees with /tables."""

from astropy import units as u
from astropy.io.votable.ucd import check_ucd


def all_tables(app):
    return [t for a, t in app.extensions["vo_gateway"].catalogue.tables()]


def test_every_column_described(app):
    for t in all_tables(app):
        assert t.description, t.qualified_name
        for c in t.columns:
            assert c.description, f"{t.qualified_name}.{c.name}"
            if t.schema != "TAP_SCHEMA":
                assert c.ucd, f"{t.qualified_name}.{c.name} has no UCD"
            if c.ucd:
                assert check_ucd(c.ucd, check_controlled_vocabulary=True), f"{t.qualified_name}.{c.name}: {c.ucd}"
            if c.unit:
                u.Unit(c.unit, format="vounit")


def test_positional_tables_have_scs(app, client):
    pos = [t for t in all_tables(app) if t.positional]
    assert {t.name for t in pos} == {"sdss_stars", "gaia_dr3_g10", "s82_rrlyrae"}
    for t in pos:
        r = client.get(f"/scs/{t.qualified_name}", query_string={"RA": 0, "DEC": 0, "SR": 0})
        assert r.status_code == 200


def test_row_counts(app):
    n = {t.name: t.nrows for t in all_tables(app)}
    assert n["gaia_dr3_g10"] == 482176 and n["sdss_stars"] == 5232 and n["s82_rrlyrae"] == 483
    assert n["s82_rrlyrae_epochs"] > 100000


def test_tap_schema_matches_tables(client):
    from gateway.testing import parse_votable

    t, _, _ = parse_votable(
        client.get(
            "/tap/sync", query_string={"LANG": "ADQL", "QUERY": "SELECT COUNT(*) AS n FROM TAP_SCHEMA.columns"}
        ).data
    )
    r = client.get("/tap/tables")
    assert r.data.count(b"<column>") == t["n"][0]
    r = client.get("/tap/tables/demo.gaia_dr3_g10")
    assert r.status_code == 200 and b"<vosi:table" in r.data
    assert client.get("/tap/tables/demo.nosuch").status_code == 404
    assert b"<column>" not in client.get("/tap/tables?detail=min").data
