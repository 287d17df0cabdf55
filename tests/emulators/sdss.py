"""SkyServer's SQL search on loopback (docs/upstreams.md §5, the recorded ``fixtures/sdss`` answers):
``GET /{release}/en/tools/search/x_results.aspx?cmd=...&format=csv&searchtool=SQL``.

* The T-SQL subset the ``sdss`` kind sends runs on DuckDB (sqlglot reads T-SQL, writes DuckDB):
  ``TOP``, ``dbo.`` tables and views, and ``dbo.fGetNearbyObjEq`` / ``dbo.fGetNearbySpecObjEq``
  as table macros returning the id and ``distance`` in arcmin, as SkyServer's functions do.
* The sky: ``PhotoObjAll`` holds the embedded demo's 5,232 real SDSS stars (``data/demo/
  sdss_stars.parquet``: objID, run, camcol, field, obj, ra, dec, PSF and model magnitudes,
  extinction), every other documented column NULL, ``mode`` 1 and ``type`` 6.  ``SpecObjAll``
  is synthetic: every 7th star with a spectrum whose ``specObjID`` follows SkyServer's bit layout
  (plate << 50 | fiber << 38 | ...), above 2**63 for plates from 8193 on.
* ``Field`` and ``Frame`` hold the demo's one real field (run 4510, camcol 4, field 30; the
  ugriz frames in ``data/demo``): centre and ra/dec range from the frames' own WCS, per-band
  MJD from their ``TAI``, ``fieldID`` in SkyServer's bit layout; other columns NULL.
* Answers: ``#Table1``, the header, CSV rows; SQL errors as HTTP 200 with ``error_message``
  (as SkyServer); at most ``row_limit`` rows, silently, as SkyServer cuts them.
* The SAS: ``GET /sas/{release}/eboss/photoObj/frames/301/{run}/{camcol}/frame-...fits.bz2``
  serves those frame files as they are (``app.config["sas_cut"]``: a byte count to stop at).
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import sqlglot
from flask import Flask, Response, request

ROOT = Path(__file__).resolve().parents[2]
SQL_TYPES = {
    "bigint": "BIGINT",
    "int": "INTEGER",
    "smallint": "SMALLINT",
    "tinyint": "UTINYINT",
    "real": "REAL",
    "float": "DOUBLE",
    "varchar": "VARCHAR",
    "varbinary": "BLOB",
}
HAVERSINE = (
    "60 * degrees(2 * asin(sqrt(pow(sin(radians(dec - dec0) / 2), 2) + cos(radians(dec)) * cos(radians(dec0)) "
    "* pow(sin(radians(ra - ra0) / 2), 2))))"
)


def _documented(source: str) -> list[tuple[str, str]]:
    import json

    path = ROOT / "plugins/sdss/vo_gateway_sdss/data" / f"{source if '_' in source else source + '_dr12'}.json"
    return [(r["name"], SQL_TYPES[r["type"]]) for r in json.loads(path.read_text())[0]["Rows"]]


def spectra(stars: pa.Table) -> pa.Table:
    """The synthetic SpecObjAll rows: every 7th star."""
    rng = np.random.default_rng(17)
    pick = np.arange(0, stars.num_rows, 7)
    n = len(pick)
    plate = 8000 + np.arange(n) % 400  # from 8193 on, specObjID > 2**63
    fiber = 1 + np.arange(n) % 1000
    mjd = 57000 + np.arange(n) % 300
    spec_id = [
        (int(p) << 50) | (int(f) << 38) | ((int(m) - 50000) << 24) | (26 << 10) for p, f, m in zip(plate, fiber, mjd)
    ]
    return pa.table(
        {
            "specObjID": pa.array([str(v) for v in spec_id]),
            "bestObjID": stars.column("objid").take(pick),
            "ra": stars.column("ra").take(pick),
            "dec": stars.column("dec").take(pick),
            "z": pa.array(rng.normal(0.0, 1e-4, n).astype(np.float32)),
            "class": pa.array(["STAR"] * n),
            "plate": pa.array(plate.astype(np.int16)),
            "mjd": pa.array(mjd.astype(np.int32)),
            "fiberID": pa.array(fiber.astype(np.int16)),
        }
    )


FRAMES = sorted((ROOT / "data/demo").glob("frame-*-004510-4-0030.fits.bz2"))


def fields() -> pa.Table:
    """The Field row of the demo's field, from its five frames' headers."""
    import bz2

    from astropy.io import fits

    from gateway.imagecut import wcs_of

    row = {"run": 4510, "rerun": 301, "camcol": 4, "field": 30, "skyVersion": 2}
    row["fieldID"] = (2 << 59) | (301 << 48) | (4510 << 32) | (4 << 29) | (30 << 16)
    corners = []
    for path in FRAMES:
        with bz2.open(path) as f:
            h = fits.Header.fromfile(f)
        band = path.name.split("-")[1]
        w = wcs_of(h)
        corners += [tuple(c) for c in w.calc_footprint(axes=(h["NAXIS1"], h["NAXIS2"]))]
        row[f"mjd_{band}"] = h["TAI"] / 86400.0
        if band == "r":
            row["ra"], row["dec"] = (float(v) for v in w.wcs_pix2world([[1023.5, 744.0]], 0)[0])
    row["raMin"], row["raMax"] = min(c[0] for c in corners), max(c[0] for c in corners)
    row["decMin"], row["decMax"] = min(c[1] for c in corners), max(c[1] for c in corners)
    return pa.table({k: [v] for k, v in row.items()})


def sdss_app(row_limit: int = 500_000) -> Flask:
    app = Flask("sdss-emulator")
    app.config["requests"] = requests = []
    app.config["fail"] = None  # a SkyServer error text to answer with, once
    app.config["row_limit"] = row_limit
    stars = pq.read_table(ROOT / "data/demo/sdss_stars.parquet")
    app.config["stars"] = stars
    app.config["spectra"] = spec = spectra(stars)
    db = duckdb.connect(":memory:")
    lock = threading.Lock()
    db.execute("CREATE SCHEMA dbo")
    given = {
        "objID": "objid",
        "run": "run",
        "camcol": "camcol",
        "field": "field",
        "obj": "obj",
        "ra": "ra",
        "dec": "dec",
        **{
            f"{k}_{b}": f"{k.lower()}_{b}"
            for k in ("psfMag", "psfMagErr", "modelMag", "modelMagErr", "extinction")
            for b in "ugriz"
        },
    }
    db.register("stars", stars)
    cols = []
    for name, typ in _documented("PhotoObjAll"):
        src = given.get(name)
        value = {"mode": "1", "type": "6", "rerun": "301", "skyVersion": "2", "clean": "1"}.get(name)
        cols.append(f'CAST({src if src else value or "NULL"} AS {typ}) AS "{name}"')
    db.execute(f"CREATE TABLE dbo.PhotoObjAll AS SELECT {', '.join(cols)} FROM stars")
    db.register("spec", spec)
    have = set(spec.column_names)
    cols = [
        f'CAST({("spec." + chr(34) + name + chr(34)) if name in have else "NULL"} AS {"UBIGINT" if name == "specObjID" else typ}) AS "{name}"'
        for name, typ in _documented("SpecObjAll")
    ]
    db.execute(f"CREATE TABLE dbo.SpecObjAll AS SELECT {', '.join(cols)} FROM spec")
    db.register("field_rows", fields())
    for table, source in (("Field", "Field_sqlloader"), ("Frame", "Frame_sqlloader")):
        have = set(fields().column_names)
        cols = [
            f'CAST({chr(34) + name + chr(34) if name in have else ("0" if name == "zoom" else "NULL")} AS {typ}) AS "{name}"'
            for name, typ in _documented(source)
        ]
        db.execute(f"CREATE TABLE dbo.{table} AS SELECT {', '.join(cols)} FROM field_rows")
    db.execute("CREATE VIEW dbo.PhotoObj AS SELECT * FROM dbo.PhotoObjAll WHERE mode = 1")
    db.execute("CREATE VIEW dbo.Star AS SELECT * FROM dbo.PhotoObj WHERE type = 6")
    db.execute("CREATE VIEW dbo.Galaxy AS SELECT * FROM dbo.PhotoObj WHERE type = 3")
    db.execute("CREATE VIEW dbo.SpecObj AS SELECT * FROM dbo.SpecObjAll")
    db.execute(
        f"CREATE MACRO dbo.fGetNearbyObjEq(ra0, dec0, r) AS TABLE SELECT objID, {HAVERSINE} AS distance FROM dbo.PhotoObjAll WHERE distance <= r"
    )
    db.execute(
        f"CREATE MACRO dbo.fGetNearbySpecObjEq(ra0, dec0, r) AS TABLE SELECT specObjID, {HAVERSINE} AS distance FROM dbo.SpecObjAll WHERE distance <= r"
    )
    db.execute(
        "CREATE MACRO dbo.fDistanceArcMinEq(ra, dec, ra0, dec0) AS "
        + HAVERSINE.replace("ra -", "ra -").replace("dec -", "dec -")
    )
    app.config["db"] = db

    app.config["sas_cut"] = None
    app.config["sas_requests"] = sas_requests = []

    @app.route("/sas/<release>/eboss/photoObj/frames/<int:rerun>/<int:run>/<int:camcol>/<name>")
    def sas(release, rerun, run, camcol, name):
        sas_requests.append(request.path)
        path = ROOT / "data/demo" / name
        if rerun != 301 or path not in FRAMES or f"-{run:06d}-{camcol}-" not in name:
            return Response("Not Found", status=404, mimetype="text/plain")
        data = path.read_bytes()
        if app.config["sas_cut"]:
            data = data[: app.config["sas_cut"]]
        return Response(data, mimetype="application/x-bzip2")

    @app.route("/<release>/en/tools/search/x_results.aspx")
    def search(release):
        requests.append((release, dict(request.args)))
        if app.config["fail"]:
            text, app.config["fail"] = app.config["fail"], None
            return Response(f"<html><body><h3>error_message</h3><p>{text}</p></body></html>", mimetype="text/html")
        if request.args.get("format") != "csv" or request.args.get("searchtool") != "SQL":
            return Response(
                "error_message: this emulation answers format=csv&searchtool=SQL only", mimetype="text/plain"
            )
        try:
            sql = sqlglot.transpile(request.args["cmd"], read="tsql", write="duckdb")[0]
            with lock:
                table = db.sql(sql).to_arrow_table()
        except (duckdb.Error, sqlglot.errors.SqlglotError) as e:
            return Response(f"error_message: {str(e).splitlines()[0]}", mimetype="text/plain")
        table = table.slice(0, app.config["row_limit"])
        out = io.BytesIO()
        pcsv.write_csv(table, out, pcsv.WriteOptions(quoting_style="needed"))
        body = out.getvalue().decode().replace('"', "")
        return Response("#Table1\n" + body, mimetype="text/plain")

    return app
