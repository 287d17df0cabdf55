"""TAP sync through the Flask test client: MAXREC/TOP matrix, formats, errors, geometry."""

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from gateway.adql.validate import analyze
from gateway.testing import parse_votable
from tests.conftest import ROOT

GAIA = ROOT / "data/demo/gaia_dr3_g10.parquet"


def sync(client, query, **params):
    return client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": query, **params})


@pytest.mark.parametrize(
    "top, maxrec, rows, status",
    [
        (5, 10, 5, "OK"),
        (10, 5, 5, "OVERFLOW"),
        (None, 7, 7, "OVERFLOW"),
        (5, 5, 5, "OK"),
        (None, 0, 0, "OVERFLOW"),
    ],
)
def test_maxrec_top_matrix(client, top, maxrec, rows, status):
    q = f"SELECT {f'TOP {top} ' if top else ''}source_id FROM demo.gaia_dr3_g10"
    t, st, _ = parse_votable(sync(client, q, MAXREC=str(maxrec)).data)
    assert (len(t), st) == (rows, status)


def test_small_table_no_overflow(client):
    t, st, _ = parse_votable(sync(client, "SELECT schema_name FROM TAP_SCHEMA.schemas", MAXREC="100").data)
    assert st == "OK" and len(t) == 2


@pytest.mark.parametrize(
    "fmt, mime",
    [
        ("votable", "application/x-votable+xml"),
        ("votable/td", "application/x-votable+xml;serialization=tabledata"),
        ("votable/b", "application/x-votable+xml;serialization=binary"),
        ("text/xml", "text/xml"),
        ("csv", "text/csv;header=present"),
        ("tsv", "text/tab-separated-values"),
        ("fits", "application/fits"),
        ("json", "application/json"),
    ],
)
def test_formats_round_trip(client, fmt, mime):
    q = (
        "SELECT TOP 50 source_id, ra, dec, phot_bp_mean_mag, POINT(ra, dec) AS p FROM demo.gaia_dr3_g10 "
        "WHERE phot_bp_mean_mag IS NULL OR source_id > 0 ORDER BY source_id"
    )
    r = client.get("/tap/sync", query_string={"LANG": "ADQL", "QUERY": q, "RESPONSEFORMAT": fmt})
    assert r.status_code == 200 and r.content_type == mime
    ref = pq.read_table(GAIA).to_pandas().sort_values("source_id").head(50)
    if fmt.startswith("votable") or fmt == "text/xml":
        t, st, _ = parse_votable(r.data)
        assert list(t["source_id"]) == list(ref.source_id)
        assert np.allclose(t["ra"], ref.ra, rtol=0, atol=0)
        assert t["p"].shape == (50, 2) and np.allclose(t["p"][:, 0], ref.ra)
        assert t["ra"].unit == "deg"
        nulls = ref.phot_bp_mean_mag.isna().to_numpy()
        assert np.array_equal(
            np.ma.getmaskarray(t["phot_bp_mean_mag"]) | np.isnan(np.ma.filled(t["phot_bp_mean_mag"], np.nan)), nulls
        )
    elif fmt == "fits":
        d = fits.open(io.BytesIO(r.data))[1].data
        assert list(d["source_id"]) == list(ref.source_id)
    elif fmt == "csv":
        lines = r.data.decode().splitlines()
        assert lines[0] == "source_id,ra,dec,phot_bp_mean_mag,p" and len(lines) == 51
        assert int(lines[1].split(",")[0]) == ref.source_id.iloc[0]


def test_cone_matches_independent_computation(client):
    ra0, dec0, r = 83.82, -5.39, 2.0
    t, st, _ = parse_votable(
        sync(
            client,
            f"SELECT source_id FROM demo.gaia_dr3_g10 WHERE "
            f"1=CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra0}, {dec0}, {r}))",
        ).data
    )
    from astropy.coordinates import SkyCoord

    ref = pq.read_table(GAIA).to_pandas()
    sep = SkyCoord(ref.ra, ref.dec, unit="deg").separation(SkyCoord(ra0, dec0, unit="deg")).deg
    assert sorted(t["source_id"]) == sorted(ref.source_id[sep <= r])
    assert len(t) > 20
    t2, _, _ = parse_votable(
        sync(
            client,
            f"SELECT source_id FROM demo.gaia_dr3_g10 WHERE DISTANCE(POINT(ra, dec), POINT({ra0}, {dec0})) <= {r}",
        ).data
    )
    t3, _, _ = parse_votable(
        sync(client, f"SELECT source_id FROM demo.gaia_dr3_g10 WHERE DISTANCE(ra, dec, {ra0}, {dec0}) <= {r}").data
    )
    assert sorted(t2["source_id"]) == sorted(t3["source_id"]) == sorted(t["source_id"])


def test_polygon_and_box_match_reference(client):
    # a non-convex (L-shaped) polygon around Orion; reference: astropy regions-free test on the sky
    verts = [(80, -10), (90, -10), (90, -5), (85, -5), (85, 0), (80, 0)]
    poly = ", ".join(f"{a}, {b}" for a, b in verts)
    t, _, _ = parse_votable(
        sync(client, f"SELECT ra, dec FROM demo.gaia_dr3_g10 WHERE 1=CONTAINS(POINT(ra, dec), POLYGON({poly}))").data
    )
    ra, dec = np.asarray(t["ra"]), np.asarray(t["dec"])
    # edges are great circles: allow 0.15 deg of bulge from the constant-dec lines
    inside_box = (ra >= 80) & (ra <= 90) & (dec >= -10.15) & (dec <= 0.15)
    in_notch = (ra > 85.05) & (dec > -4.8)
    assert len(t) > 30 and inside_box.all() and not in_notch.any()
    # and every star clearly inside the L is returned
    ref = pq.read_table(GAIA).to_pandas()
    clear = ((ref.ra > 80.1) & (ref.ra < 89.9) & (ref.dec > -9.8) & (ref.dec < -5.2)) | (
        (ref.ra > 80.1) & (ref.ra < 84.9) & (ref.dec > -9.8) & (ref.dec < -0.2)
    )
    assert set(ref.ra[clear]) <= set(ra)
    t2, _, _ = parse_votable(
        sync(
            client, "SELECT COUNT(*) AS n FROM demo.gaia_dr3_g10 WHERE 1=CONTAINS(POINT(ra, dec), BOX(85, -5, 10, 10))"
        ).data
    )
    assert t2["n"][0] >= len(t)


def test_join_group_order_offset(client):
    q = (
        "SELECT s.id, s.period, COUNT(*) AS n, AVG(e.mag) AS mean_r FROM demo.s82_rrlyrae AS s "
        "JOIN demo.s82_rrlyrae_epochs AS e ON e.id = s.id WHERE e.band = 'r' "
        "GROUP BY s.id, s.period HAVING COUNT(*) > 10 ORDER BY n DESC, s.id OFFSET 2"
    )
    t, st, _ = parse_votable(sync(client, q, MAXREC="5").data)
    assert len(t) == 5 and st == "OVERFLOW"
    assert list(t["n"]) == sorted(t["n"], reverse=True)
    assert t["n"].dtype.kind == "i" and t["period"].unit == "d"


def test_functions(client):
    q = (
        "SELECT TOP 1 ABS(-2.5) AS a, CEILING(1.2) AS c, FLOOR(1.8) AS f, LOG10(100) AS l, LOG(EXP(1)) AS ln, "
        "MOD(7, 3) AS m, POWER(2, 10) AS p, ROUND(2.567, 2) AS r, TRUNCATE(2.567, 1) AS tr, SQRT(16) AS s, "
        "DEGREES(PI()) AS d, ATAN2(1, 1) AS at, UPPER('ab') || LOWER('CD') AS u, COALESCE(NULL, 3) AS co "
        "FROM demo.sdss_stars"
    )
    t, st, _ = parse_votable(sync(client, q).data)
    row = t[0]
    assert (row["a"], row["c"], row["f"], row["m"], row["p"], row["s"], row["co"]) == (2.5, 2, 1, 1, 1024, 4, 3)
    assert np.isclose(row["l"], 2) and np.isclose(row["ln"], 1) and np.isclose(row["d"], 180)
    assert np.isclose(row["r"], 2.57) and np.isclose(row["tr"], 2.5) and np.isclose(row["at"], np.pi / 4)
    assert row["u"] == "ABcd"


@pytest.mark.parametrize(
    "params, status, fragment",
    [
        ({"LANG": "OOBLECK", "QUERY": "SELECT TOP 1 * FROM TAP_SCHEMA.tables"}, 400, "unknown query language"),
        ({"LANG": "ADQL"}, 400, "QUERY is required"),
        ({"LANG": "ADQL", "QUERY": "SELECT x FROM nowhere"}, 400, "table nowhere does not exist"),
        (
            {"LANG": "ADQL", "QUERY": "SELECT TOP 1 * FROM TAP_SCHEMA.tables", "RESPONSEFORMAT": "foo/bar"},
            400,
            "unsupported RESPONSEFORMAT",
        ),
        ({"LANG": "ADQL", "QUERY": "SELECT TOP 1 * FROM TAP_SCHEMA.tables", "MAXREC": "abc"}, 400, "MAXREC"),
        ({"LANG": "ADQL", "QUERY": "SELECT ra FROM demo.sdss_stars WHERE ra = 'x'"}, 400, "query failed"),
    ],
)
def test_errors_are_dali_documents(client, params, status, fragment):
    r = client.get("/tap/sync", query_string=params)
    assert r.status_code == status and r.content_type.startswith("application/x-votable+xml")
    _, st, infos = parse_votable(r.data)
    assert st == "ERROR" and fragment in infos["QUERY_STATUS"] or fragment in r.data.decode()


def test_parameter_names_case_insensitive_and_single_valued(client):
    r = client.post(
        "/tap/sync",
        data={
            "lang": "ADQL",
            "Query": "SELECT TOP 2 source_id FROM demo.gaia_dr3_g10",
            "maxrec": "1",
            "responseformat": "csv",
            "REQUEST": "doQuery",
            "FOO": "bar",
        },
    )
    assert r.status_code == 200 and len(r.data.decode().splitlines()) == 2
    r = client.get("/tap/sync?LANG=ADQL&QUERY=SELECT+TOP+1+*+FROM+TAP_SCHEMA.tables&MAXREC=1&MAXREC=2")
    assert r.status_code == 400 and b"single-valued" in r.data
    r = client.post(
        "/tap/sync", data={"LANG": "ADQL", "QUERY": "SELECT TOP 1 source_id FROM demo.gaia_dr3_g10", "FORMAT": "csv"}
    )
    assert r.content_type.startswith("text/csv")


def test_midstream_failure_gives_trailing_error(client):
    # CAST of a string column to INT fails only when a non-numeric row is reached
    q = "SELECT CAST(band AS INTEGER) AS b FROM demo.s82_rrlyrae_epochs"
    r = client.get("/tap/sync", query_string={"LANG": "ADQL", "QUERY": q})
    if r.status_code == 200:
        _, st, _ = parse_votable(r.data)
        assert st == "ERROR"
    else:
        assert r.status_code == 400


def test_scs_index_answers_what_the_sql_cone_answers(app, client):
    """The embedded archive's in-memory SCS path (dec-sorted rows, binary search) returns the
    same rows in the same order as the SQL cone, and as a numpy truth, across the sky: poles,
    RA 0, large and tiny radii; MAXREC cuts it with OVERFLOW."""
    import pyarrow as pa

    from gateway.archive import Cone
    from gateway.engine import DuckDBArchive
    from gateway.sky import separation

    a = app.extensions["vo_gateway"].catalogue.archives["demo"]
    table = next(t for t in a.tables() if t.name == "gaia_dr3_g10")
    g = pq.read_table(GAIA)
    rng = np.random.default_rng(11)
    cones = [
        Cone(0.05, 0.0, 2.0),
        Cone(359.9, -30, 1.5),
        Cone(10, 89.5, 1.0),
        Cone(200, -89.9, 3),
        Cone(83.8, -5.4, 1e-4),
    ]
    cones += [
        Cone(float(rng.uniform(0, 360)), float(rng.uniform(-90, 90)), float(rng.choice([0.05, 1, 5])))
        for _ in range(40)
    ]

    def rows(stream):
        batches = [b for b in stream if b.num_rows]
        return pa.Table.from_batches(batches) if batches else None

    for c in cones:
        got = rows(a.cone_search(table, c, None, 3))
        sql = rows(DuckDBArchive.cone_search(a, table, c, None, 3))
        assert (got is None) == (sql is None) and (got is None or got.equals(sql.cast(got.schema))), c
        got = got if got is not None else pa.table({"source_id": pa.array([], pa.int64())})
        truth = separation(g["ra"].to_numpy(), g["dec"].to_numpy(), c.ra, c.dec) <= c.radius
        assert sorted(got["source_id"].to_pylist()) == sorted(g["source_id"].to_numpy()[truth].tolist()), c
    assert sum(1 for c in cones if len(list(a.cone_search(table, c, None, 1)))) > 20
    from astropy.io.votable import parse

    vot = parse(io.BytesIO(client.get("/scs/demo.gaia_dr3_g10?RA=83.8&DEC=-5.4&SR=5&MAXREC=3").data), verify="ignore")
    assert len(vot.get_first_table().array) == 3
    assert [i.value for i in vot.resources[0].infos if i.name == "QUERY_STATUS"][-1] == "OVERFLOW"


def test_sorted_query_streams_its_header_and_reports_late_errors(client):
    """A sorted query's header is written before DuckDB has sorted (deferred execution), so
    an error the engine meets while running it comes in-band (QUERY_STATUS=ERROR after the
    TABLE, DALI 1.1 §4.4); FITS, which needs every row first, still gets an error document
    with 400; binding errors are still 400 before anything is sent."""
    q = "SELECT TOP 3 source_id, CAST('x' AS INTEGER) AS bad FROM demo.gaia_dr3_g10 ORDER BY source_id"
    r = sync(client, q)
    assert (
        r.status_code == 200
        and b'<INFO name="QUERY_STATUS" value="ERROR">query failed: the string \'x\' cannot be read as INTEGER'
        in r.data
    )
    assert r.data.index(b"</TABLE>") < r.data.index(b'value="ERROR"')
    r = sync(client, q, RESPONSEFORMAT="fits")
    assert r.status_code == 400 and parse_votable(r.data)[1] == "ERROR"
    r = sync(client, q, RESPONSEFORMAT="csv")
    assert r.status_code == 200 and r.data.splitlines()[-1].startswith(b"# QUERY_STATUS=ERROR: query failed")
    r = sync(client, "SELECT TOP 3 source_id FROM demo.gaia_dr3_g10 ORDER BY nope")
    assert r.status_code == 400 and b"nope" in r.data
    t, st, _ = parse_votable(sync(client, "SELECT TOP 4 source_id FROM demo.gaia_dr3_g10 ORDER BY source_id DESC").data)
    g = np.sort(pq.read_table(GAIA)["source_id"].to_numpy())[::-1][:4]
    assert st == "OK" and list(t["source_id"]) == list(g)


def test_whole_table_sorts_by_the_id_read_only_the_rows_wanted(app, client):
    """``SELECT TOP n ... ORDER BY id [DESC]`` over a whole table is bounded by the id of its
    n-th row (the order index), and answers exactly what sorting all rows answers: numpy's
    sort of the source file is the truth; TOP, MAXREC/OVERFLOW, DESC, an alias and a table
    qualifier; a WHERE, an output alias shadowing the key or a second key keep the full sort."""
    ids = np.sort(pq.read_table(ROOT / "data/demo/gaia_dr3_g10.parquet", columns=["source_id"])["source_id"].to_numpy())
    archive = app.extensions["vo_gateway"].catalogue.archives["demo"]
    cases = [
        ("SELECT TOP 1000 source_id, ra FROM demo.gaia_dr3_g10 ORDER BY source_id", {}, ids[:1000], "OK"),
        (
            "SELECT TOP 7 g.source_id AS s FROM demo.gaia_dr3_g10 AS g ORDER BY g.source_id DESC",
            {},
            ids[::-1][:7],
            "OK",
        ),
        ("SELECT source_id FROM demo.gaia_dr3_g10 ORDER BY source_id", {"MAXREC": 2500}, ids[:2500], "OVERFLOW"),
        (
            "SELECT TOP 3000 source_id FROM demo.gaia_dr3_g10 ORDER BY source_id DESC",
            {"MAXREC": 3000},
            ids[::-1][:3000],
            "OK",
        ),
    ]
    for q, extra, expect, status in cases:
        plan = archive.translate(analyze(q, app.extensions["vo_gateway"].catalogue))
        assert plan.order_values is not None and "?" in plan.sql, q
        t, st, _ = parse_votable(sync(client, q, **extra).data)
        assert st == status and np.array_equal(np.asarray(t.columns[0]), expect), q
    for q in (
        "SELECT TOP 5 source_id FROM demo.gaia_dr3_g10 WHERE dec > 0 ORDER BY source_id",
        "SELECT TOP 5 ra AS source_id FROM demo.gaia_dr3_g10 ORDER BY source_id",
        "SELECT TOP 5 source_id FROM demo.gaia_dr3_g10 ORDER BY source_id, ra",
        "SELECT TOP 5 source_id FROM demo.gaia_dr3_g10 ORDER BY ra",
    ):
        plan = archive.translate(analyze(q, app.extensions["vo_gateway"].catalogue))
        assert plan.order_values is None and "?" not in plan.sql, q
    t, _, _ = parse_votable(sync(client, "SELECT TOP 5 ra AS source_id FROM demo.gaia_dr3_g10 ORDER BY source_id").data)
    ra = pq.read_table(ROOT / "data/demo/gaia_dr3_g10.parquet", columns=["ra"])["ra"].to_numpy()
    assert np.allclose(np.asarray(t["source_id"]), np.sort(ra)[:5])


def test_results_are_gzipped_for_clients_that_ask(client):
    """Accept-Encoding: gzip (what requests, so pyvo, sends) gets a gzip body that inflates to
    exactly the uncompressed answer; a client that does not ask gets identity; FITS and the
    BINARY2 VOTable are never compressed."""
    import gzip

    q = {"LANG": "ADQL", "QUERY": "SELECT TOP 3000 source_id, ra, dec FROM demo.gaia_dr3_g10 ORDER BY source_id"}
    plain = client.post("/tap/sync", data=q)
    assert "Content-Encoding" not in plain.headers
    z = client.post("/tap/sync", data=q, headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in z.headers and z.data == plain.data  # BINARY2: base64 hardly shrinks
    for fmt in ("csv", "votable/td", "tsv", "json"):
        z = client.post("/tap/sync", data={**q, "RESPONSEFORMAT": fmt}, headers={"Accept-Encoding": "gzip, deflate"})
        ref = client.post("/tap/sync", data={**q, "RESPONSEFORMAT": fmt})
        assert z.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in z.headers["Vary"]
        assert gzip.decompress(z.data) == ref.data and len(z.data) < len(ref.data)
    f = client.post("/tap/sync", data={**q, "RESPONSEFORMAT": "fits"}, headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in f.headers and f.data[:6] == b"SIMPLE"


@pytest.mark.parametrize(
    "query, maxrec",
    [
        ("SELECT TOP 1000 source_id FROM demo.gaia_dr3_g10 ORDER BY source_id", None),  # order index
        ("SELECT source_id FROM demo.gaia_dr3_g10 ORDER BY source_id DESC", 2500),  # order index, MAXREC cut
        ("SELECT TOP 40 source_id FROM demo.gaia_dr3_g10 WHERE dec > 80", None),  # TOP cut while streaming
        ("SELECT source_id FROM demo.gaia_dr3_g10 WHERE dec > 80 ORDER BY ra OFFSET 10", 100000),
        ("SELECT TOP 30 source_id FROM demo.gaia_dr3_g10 WHERE dec > 80 ORDER BY ra OFFSET 20", None),
        ("SELECT COUNT(*) AS n, ROUND(dec, 0) AS d FROM demo.gaia_dr3_g10 GROUP BY ROUND(dec, 0)", 50),
        ("SELECT DISTINCT ROUND(dec, 0) AS d FROM demo.gaia_dr3_g10 WHERE dec > 85", None),
        (
            "SELECT source_id FROM demo.gaia_dr3_g10 WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
            "CIRCLE('ICRS', 83.8, -5.4, 3))",
            None,
        ),
        ("SELECT source_id FROM demo.gaia_dr3_g10 WHERE dec > 90", None),  # no rows
        ("SELECT TOP 0 source_id FROM demo.gaia_dr3_g10 ORDER BY ra", None),  # TOP 0
    ],
)
def test_stream_count_is_what_the_stream_delivers(app, query, maxrec):
    """``RowStream.count`` (FITS needs NAXIS2 first) equals the rows the same stream then
    yields, and its overflow flag equals the one streaming sets, for every query shape the
    engine plans differently (order index, TOP cut while streaming, OFFSET, grouping)."""
    gw = app.extensions["vo_gateway"]
    archive = gw.catalogue.archives["demo"]
    q = analyze(query, gw.catalogue)
    stream = archive.execute(archive.translate(q), gw.queries.maxrec(maxrec), top=q.top)
    rows, overflow = stream.count()
    assert (rows, overflow) == (sum(b.num_rows for b in stream), stream.overflow), query


def test_fits_streams_large_results_exactly(client):
    """FITS from a DuckDB archive is streamed (count, header, rows); the file equals the
    source rows, with NAXIS2 cut at MAXREC and QUERYST=OVERFLOW, nulls as NaN, UCDs and units."""
    ref = pq.read_table(GAIA).to_pandas().sort_values("source_id")
    q = "SELECT source_id, ra, dec, phot_bp_mean_mag FROM demo.gaia_dr3_g10 ORDER BY source_id"
    r = sync(client, q, RESPONSEFORMAT="fits", MAXREC="60000")
    assert r.status_code == 200 and r.content_type == "application/fits" and len(r.data) % 2880 == 0
    hdu = fits.open(io.BytesIO(r.data))[1]
    assert hdu.header["NAXIS2"] == 60000 and hdu.header["QUERYST"] == "OVERFLOW"
    assert hdu.header["TUNIT2"] == "deg" and hdu.header["TUCD2"].startswith("pos.eq.ra")
    head = ref.head(60000)
    assert np.array_equal(hdu.data["source_id"], head.source_id) and np.array_equal(hdu.data["ra"], head.ra)
    bp = head.phot_bp_mean_mag.to_numpy(np.float32)
    assert np.array_equal(np.isnan(hdu.data["phot_bp_mean_mag"]), np.isnan(bp)) and np.isnan(bp).any()
    assert np.allclose(hdu.data["phot_bp_mean_mag"], bp, equal_nan=True, rtol=0, atol=0)
    r = sync(client, "SELECT TOP 5 source_id FROM demo.gaia_dr3_g10 WHERE dec > 90", RESPONSEFORMAT="fits")
    hdu = fits.open(io.BytesIO(r.data))[1]
    assert hdu.header["NAXIS2"] == 0 and "QUERYST" not in hdu.header and len(hdu.data) == 0
