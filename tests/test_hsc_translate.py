"""ADQL -> HSC-SSP SQL (plugins/hsc, issue 4 item 3): the seed document's three example queries,
written in ADQL, become the SQL the seed shows; what HSC cannot do is refused by name."""

import pytest
import sqlglot
from vo_gateway_hsc.translate import to_hsc_sql

from gateway.adql import analyze
from gateway.faults import UsageFault
from gateway.schema import Column, Table

FORCED2 = Table("hsc_s23b_wide", "forced2", [Column("object_id", "long"), Column("i_psfflux_mag", "float", unit="mag")])
FORCED = Table(
    "hsc_s23b_wide",
    "forced",
    [
        Column("object_id", "long", ucd="meta.id;meta.main"),
        Column("ra", "double", unit="deg", ucd="pos.eq.ra;meta.main"),
        Column("dec", "double", unit="deg", ucd="pos.eq.dec;meta.main"),
        Column("isprimary", "boolean"),
        Column("i_cmodel_flux", "double"),
        Column("i_cmodel_mag", "float", unit="mag"),
    ],
    ra_column="ra",
    dec_column="dec",
    id_column="object_id",
)
PHOTOZ = Table("hsc_s23b_wide", "photoz_mizuki", [Column("object_id", "long"), Column("photoz_best", "float")])
SCHEMAS = {"hsc_s23b_wide": "s23b_wide"}


class Tables:
    """The catalogue interface analyze() needs, over two tables."""

    def lookup(self, schema, name):
        for t in (FORCED, FORCED2, PHOTOZ):
            if t.name == name.lower() and (schema is None or schema.lower() == t.schema):
                return "hsc", t
        return None

    def qualified_names(self):
        return [t.qualified_name for t in (FORCED, FORCED2, PHOTOZ)]


def hsc(adql: str) -> str:
    return to_hsc_sql(analyze(adql, Tables()), SCHEMAS)


def same(a: str, b: str) -> bool:
    norm = lambda s: sqlglot.transpile(s, read="postgres", write="postgres")[0].lower()  # noqa: E731
    return norm(a) == norm(b)


SEED = [  # (ADQL, the SQL in ../shared/seeds/hsc_ssp_data_access_tools.txt)
    (
        "SELECT object_id, ra, dec, i_cmodel_flux, i_cmodel_mag FROM hsc_s23b_wide.forced "
        "WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 136.47, -0.05, 60/3600.0)) AND i_cmodel_flux > 0 "
        "ORDER BY i_cmodel_flux DESC",
        "SELECT object_id, ra, dec, i_cmodel_flux, i_cmodel_mag FROM s23b_wide.forced "
        "WHERE coneSearch(coord, 136.47, -0.05, 60) AND i_cmodel_flux > 0 ORDER BY i_cmodel_flux DESC",
    ),
    (
        "SELECT TOP 1000 * FROM hsc_s23b_wide.forced WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
        "BOX('ICRS', 136.5, 0, 1, 1))",
        "SELECT * FROM s23b_wide.forced WHERE boxSearch(coord, 136.0, 137.0, -0.5, 0.5) LIMIT 1000",
    ),
    (
        "SELECT f.object_id, f.ra, f.dec, f.i_cmodel_mag, p.photoz_best FROM hsc_s23b_wide.forced AS f "
        "JOIN hsc_s23b_wide.photoz_mizuki AS p ON f.object_id = p.object_id "
        "WHERE 1 = CONTAINS(POINT('ICRS', f.ra, f.dec), CIRCLE('ICRS', 150.0, 2.0, 120/3600.0))",
        "SELECT f.object_id, f.ra, f.dec, f.i_cmodel_mag, p.photoz_best FROM s23b_wide.forced AS f "
        "JOIN s23b_wide.photoz_mizuki AS p ON f.object_id = p.object_id WHERE coneSearch(f.coord, 150.0, 2.0, 120)",
    ),
]


@pytest.mark.parametrize("adql,expected", SEED)
def test_seed_examples_become_the_seed_sql(adql, expected):
    got = hsc(adql)
    assert same(got, expected), got


def test_distance_cone_ra_ranges_and_wrap():
    got = hsc(
        "SELECT TOP 5 object_id FROM hsc_s23b_wide.forced WHERE "
        "DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', 10, 20)) < 0.01 AND isprimary = 1"
    )
    assert same(
        got, "SELECT object_id FROM s23b_wide.forced WHERE coneSearch(coord, 10, 20, 36) AND isprimary LIMIT 5"
    ), got  # PostgreSQL booleans: no boolean = integer operator
    got = hsc("SELECT object_id FROM hsc_s23b_wide.forced WHERE ra BETWEEN 350 AND 10 AND dec BETWEEN -1 AND 1")
    assert "boxSearch(coord, 350.0, 370.0, -1.0, 1.0)" in got  # crossing RA 0 (boxSearch's own rule)
    got = hsc(
        "SELECT object_id FROM hsc_s23b_wide.forced WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
        "BOX('ICRS', 0.5, 0, 2, 1))"
    )
    assert "boxSearch(coord, 359.5, 361.5, -0.5, 0.5)" in got and "ORDER" not in got


def test_what_hsc_cannot_do_is_refused_by_name():
    with pytest.raises(UsageFault, match="POLYGON is not available on HSC-SSP") as e:
        hsc(
            "SELECT object_id FROM hsc_s23b_wide.forced WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
            "POLYGON('ICRS', 10, 10, 11, 10, 11, 11))"
        )
    assert e.value.position is not None
    with pytest.raises(UsageFault, match="DISTANCE is not available"):
        hsc(
            "SELECT DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', 1, 1)) AS d FROM hsc_s23b_wide.forced "
            "WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 1, 1, 0.1))"
        )


def test_split_tables_join_using_object_id_and_booleans():
    got = hsc(
        "SELECT object_id, i_cmodel_mag, i_psfflux_mag FROM hsc_s23b_wide.forced "
        "LEFT JOIN hsc_s23b_wide.forced2 USING (object_id) WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
        "CIRCLE('ICRS', 150, 2, 0.01)) AND isprimary = 0"
    )
    assert same(
        got,
        "SELECT forced.object_id, forced.i_cmodel_mag, forced2.i_psfflux_mag FROM s23b_wide.forced "
        "LEFT JOIN s23b_wide.forced2 USING (object_id) WHERE coneSearch(forced.coord, 150, 2, 36) "
        "AND NOT forced.isprimary",
    ), got
    with pytest.raises(UsageFault, match="ambiguous"):  # only the USING column is merged
        hsc(
            "SELECT object_id FROM hsc_s23b_wide.forced JOIN hsc_s23b_wide.forced2 ON forced.object_id = "
            "forced2.object_id"
        )


def _with_upload(adql: str, data: dict, cols, upload_rows=None) -> str:
    import pyarrow as pa

    from gateway.catalogue import UploadOverlay
    from gateway.uploads import UploadTable

    up = UploadTable(Table("TAP_UPLOAD", "t", cols), pa.table(data))

    class Base(Tables):
        def udfs(self):
            return {}

    q = analyze(adql, UploadOverlay(Base(), {"t": up}))
    q.uploads = {"t": up}
    return to_hsc_sql(q, SCHEMAS, upload_rows=upload_rows)


UPCOLS = [
    Column("tid", "long"),
    Column("ra", "double", unit="deg"),
    Column("dec", "double", unit="deg"),
    Column("name", "char", arraysize="*"),
]


def test_an_upload_becomes_a_values_list_joined_by_conesearch():
    """TAP_UPLOAD rows inline as VALUES (first row cast to the declared types; NULL, NaN and
    quotes kept), and the crossmatch in ON a coneSearch around the upload's columns."""
    sql = _with_upload(
        "SELECT u.tid, f.object_id FROM TAP_UPLOAD.t AS u JOIN hsc_s23b_wide.forced AS f "
        "ON 1 = CONTAINS(POINT('ICRS', f.ra, f.dec), CIRCLE('ICRS', u.ra, u.dec, 2.0/3600))",
        {"tid": [1, 2, 3], "ra": [150.0, float("nan"), 150.2], "dec": [2.0, 2.1, None], "name": ["a'b", None, "c"]},
        UPCOLS,
    )
    assert same(
        sql,
        "SELECT u.tid, f.object_id FROM (VALUES (CAST(1 AS BIGINT), CAST(150.0 AS DOUBLE PRECISION), "
        "CAST(2.0 AS DOUBLE PRECISION), CAST('a''b' AS TEXT)), (2, CAST('NaN' AS DOUBLE PRECISION), 2.1, "
        "NULL), (3, 150.2, NULL, 'c')) AS u(tid, ra, dec, name) JOIN s23b_wide.forced AS f "
        "ON coneSearch(f.coord, u.ra, u.dec, (2.0 / 3600) * 3600)",
    ), sql


def test_distance_crossmatch_and_a_cone_inside_exists():
    d = _with_upload(
        "SELECT u.tid FROM TAP_UPLOAD.t AS u JOIN hsc_s23b_wide.forced AS f "
        "ON DISTANCE(POINT('ICRS', u.ra, u.dec), POINT('ICRS', f.ra, f.dec)) < 0.001",
        {"tid": [1], "ra": [1.0], "dec": [2.0], "name": ["x"]},
        UPCOLS,
    )
    assert "coneSearch(f.coord, u.ra, u.dec, (0.001) * 3600)" in d
    e = _with_upload(
        "SELECT f.object_id FROM hsc_s23b_wide.forced AS f WHERE EXISTS (SELECT 1 FROM TAP_UPLOAD.t AS u "
        "WHERE 1 = CONTAINS(POINT('ICRS', f.ra, f.dec), CIRCLE('ICRS', u.ra, u.dec, 0.01)))",
        {"tid": [1], "ra": [1.0], "dec": [2.0], "name": ["x"]},
        UPCOLS,
    )
    assert "WHERE coneSearch(f.coord, u.ra, u.dec, (0.01) * 3600)" in e and "VALUES" in e


def test_an_empty_upload_and_the_row_limit():
    empty = _with_upload(
        "SELECT u.tid, f.object_id FROM TAP_UPLOAD.t AS u JOIN hsc_s23b_wide.forced AS f "
        "ON DISTANCE(POINT('ICRS', u.ra, u.dec), POINT('ICRS', f.ra, f.dec)) < 0.001",
        {"tid": [], "ra": [], "dec": [], "name": []},
        UPCOLS,
    )
    assert "WHERE FALSE" in empty.upper() and "CAST(NULL AS BIGINT)" in empty
    with pytest.raises(UsageFault, match="at most 2 rows of an uploaded table"):
        _with_upload(
            "SELECT u.tid FROM TAP_UPLOAD.t AS u",
            {"tid": [1, 2, 3], "ra": [1.0] * 3, "dec": [2.0] * 3, "name": ["x"] * 3},
            UPCOLS,
            upload_rows=2,
        )


def test_cone_forms_leave_the_query_in_place():
    """Reading a cone (here the flipped, 4-argument DISTANCE) moves no node of the query: every
    column still hangs under its SELECT, which the planner's scope lookup relies on."""
    from sqlglot import exp

    from gateway.archive import Cone
    from gateway.residual import cone_term

    q = analyze("SELECT object_id FROM hsc_s23b_wide.forced WHERE 0.01 > DISTANCE(ra, dec, 150.0, 2.0)", Tables())
    cond = q.ast.args["where"].this
    assert cone_term(cond, "forced", FORCED) == Cone(150.0, 2.0, 0.01)
    assert all(c.find_ancestor(exp.Select) is q.ast for c in q.ast.find_all(exp.Column))
    assert "coneSearch(coord, 150.0, 2.0, 36)" in to_hsc_sql(q, SCHEMAS)
