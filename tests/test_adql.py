"""ADQL layer: parser, allow-list, catalogue validation with positions and suggestions."""

import pytest

from gateway.adql import analyze, parse
from gateway.faults import UsageFault


@pytest.fixture(scope="module")
def cat(app):
    return app.extensions["vo_gateway"].catalogue


@pytest.mark.parametrize(
    "q, fragment, pos",
    [
        ("SELECT ra, FROM demo.gaia_dr3_g10", "unexpected 'FROM'", (1, 12)),
        ("SELECT ra FROM demo.gaia_dr3_g10 WHERE ra > > 3", "unexpected '>'", (1, 45)),
        ("SELECT foo(ra) FROM demo.gaia_dr3_g10", "unknown ADQL function FOO", None),
        (
            "SELECT ra FROM demo.sdss_stars WHERE objid IN (SELECT objid FROM demo.sdss_stars UNION "
            "SELECT objid FROM demo.sdss_stars)",
            "UNION",
            (1, 55),
        ),  # top-level set operations only
        ("DELETE FROM demo.gaia_dr3_g10", "", None),
        ("", "empty", None),
    ],
)
def test_syntax_errors(q, fragment, pos):
    with pytest.raises(UsageFault) as e:
        parse(q)
    assert fragment in str(e.value)
    if pos:
        assert e.value.position == pos


def test_unknown_column_position_and_suggestion(cat):
    with pytest.raises(UsageFault) as e:
        analyze("SELECT source_id,\n  phot_g_mean_mg FROM demo.gaia_dr3_g10", cat)
    assert "phot_g_mean_mg does not exist" in e.value.message
    assert "did you mean phot_g_mean_mag" in e.value.message
    assert e.value.position == (2, 3)


def test_unknown_table_suggestion(cat):
    with pytest.raises(UsageFault) as e:
        analyze("SELECT * FROM demo.gaia_dr3", cat)
    assert "table demo.gaia_dr3 does not exist; did you mean demo.gaia_dr3_g10?" in e.value.message


def test_ambiguous_column(cat):
    with pytest.raises(UsageFault, match="ambiguous"):
        analyze("SELECT id FROM demo.s82_rrlyrae AS s JOIN demo.s82_rrlyrae_epochs AS e ON s.id = e.id", cat)


def test_star_expansion_and_field_names(cat):
    q = analyze(
        'SELECT TOP 3 g.*, ra AS "RA deg", COUNT(*) FROM demo.gaia_dr3_g10 AS g GROUP BY source_id, ra, dec,'
        " phot_g_mean_mag, phot_bp_mean_mag, phot_rp_mean_mag",
        cat,
    )
    names = [o.name for o in q.output]
    assert names == [
        "source_id",
        "ra",
        "dec",
        "phot_g_mean_mag",
        "phot_bp_mean_mag",
        "phot_rp_mean_mag",
        "RA deg",
        "count",
    ]
    assert q.output[6].column.datatype == "double" and q.output[6].column.unit == "deg"  # alias keeps source type
    assert q.top == 3


def test_subquery_and_quoted_identifiers(cat):
    q = analyze(
        'SELECT "size", column_name FROM TAP_SCHEMA.columns WHERE table_name IN '
        "(SELECT table_name FROM TAP_SCHEMA.tables WHERE schema_name = 'demo')",
        cat,
    )
    assert [o.name for o in q.output] == ["size", "column_name"]
