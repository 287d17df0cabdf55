"""A loopback emulation of the HSC-SSP catalog-job API (REFERENCE.md §1.2; no recorded response
exists, so it follows the reference and the official tools' code):

``POST {base}submit|status|download|delete|cancel|preview``, JSON bodies with
``credential: {account_name, password}`` and a numeric ``clientVersion`` (a string answers 500).
Bad credentials -> 401; SQL that does not run -> 406 with the error text (syntax check) or, with
``skip_syntax_check``, ``status: "error"`` later.  Jobs go ``running`` -> ``done`` after
``app.polls_to_done`` status calls.  ``download`` gives CSV with ``#`` metainfo lines and the
header line prefixed ``# ``.  The SQL runs in DuckDB over a synthetic sky (schemas
``s23b_wide`` and ``pdr3_wide``: every table of the bundled metadata and ``photoz_mizuki``, one row
per ``forced`` object) where ``coneSearch(coord, ra,
dec, arcsec)`` and ``boxSearch(coord, ra1, ra2, dec1, dec2)`` (with the RA-wrap rule) exist.
``app.jobs`` and ``app.requests`` are kept for the tests.
"""
from __future__ import annotations

import io
import itertools

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import sqlglot
from flask import Flask, Response, request

from vo_gateway_hsc import metadata

from . import column_values, discs

CENTRES = [(150.0, 2.0), (136.47, -0.05)]


def angle(text: str) -> float:
    """An angle of a DAS list or query: degrees, or suffixed deg/amin/arcmin/asec/arcsec."""
    for suffix, scale in (("deg", 1), ("amin", 1 / 60), ("arcmin", 1 / 60), ("asec", 1 / 3600), ("arcsec", 1 / 3600)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)


def _values(c, m, rng):
    if c.datatype == "boolean":
        return rng.uniform(0, 1, m) < 0.1
    return column_values(c, m, rng, mags=(18, 27))


def hsc_app(users: dict[str, str] | None = None, n: int = 2000, missing=("a_g",)) -> Flask:
    """``missing``: columns of the bundled metadata the emulated tables lack (schema drift)."""
    app = Flask("hsc-emulator")
    users = users or {"alice": "a-pw"}
    app.requests, app.jobs, app.polls_to_done, app.truncate = [], {}, 2, False  # type: ignore[attr-defined]
    ids = itertools.count(1000)
    rng = np.random.default_rng(4242)
    db = duckdb.connect()
    ra, dec = discs(rng, CENTRES, n, 0.2)
    m = len(ra)
    object_id = (np.int64(9813) << 42) + np.arange(m, dtype=np.int64)  # 64-bit ids (tract << 42 | ...)
    special = {"object_id": object_id, "ra": ra, "dec": dec, "isprimary": rng.uniform(0, 1, m) < 0.9,
               "i_cmodel_flux": rng.lognormal(7, 1.5, m).astype(np.float32)}
    forced = pa.table({c.name: special.get(c.name, _values(c, m, rng)) for c in metadata.forced("x", True).columns
                       if c.name not in missing})
    tables = {"forced": forced}
    for t in metadata.rerun_tables("x", "s23b_wide", True, ["photoz_mizuki"])[1:]:  # one row per forced object
        tables[t.name] = pa.table({c.name: object_id if c.name == "object_id" else
                                   special[c.name] if c.name in ("ra", "dec") else _values(c, m, rng) for c in t.columns})
    for schema in ("s23b_wide", "pdr3_wide"):
        db.execute(f"CREATE SCHEMA {schema}")
        for name, rows in tables.items():
            db.register(f"{name}_rows", rows)
            coord = ", {'ra': ra, 'dec': dec} AS coord" if "ra" in rows.column_names else ""
            db.execute(f"CREATE TABLE {schema}.{name} AS SELECT *{coord} FROM {name}_rows")
    db.execute("""CREATE MACRO conesearch(c, ra0, dec0, r) AS
        degrees(2 * asin(sqrt(pow(sin(radians(c.dec - dec0) / 2), 2) + cos(radians(c.dec)) * cos(radians(dec0))
        * pow(sin(radians(c.ra - ra0) / 2), 2)))) * 3600 <= r""")
    db.execute("""CREATE MACRO boxsearch(c, ra1, ra2, dec1, dec2) AS
        c.dec BETWEEN dec1 AND dec2 AND (CASE WHEN ra1 <= ra2 AND ra2 <= 360 THEN c.ra BETWEEN ra1 AND ra2
        WHEN ra2 > 360 THEN c.ra >= ra1 OR c.ra <= ra2 - 360 ELSE c.ra BETWEEN ra2 AND ra1 END)""")
    app.forced = forced  # type: ignore[attr-defined]
    app.photoz = tables["photoz_mizuki"]  # type: ignore[attr-defined]
    app.forced2 = tables["forced2"]  # type: ignore[attr-defined]

    def reply(status, body, mimetype="application/json"):
        import json
        return Response(json.dumps(body) if mimetype == "application/json" else body, status, mimetype=mimetype)

    booleans = {c.name for c in metadata.forced("x", True).columns if c.datatype == "boolean"}

    def run(sql: str) -> pa.Table:
        tree = sqlglot.parse_one(sql, read="postgres")
        for cmp in tree.find_all(sqlglot.exp.EQ, sqlglot.exp.NEQ):  # PostgreSQL has no boolean = integer
            sides = (cmp.this, cmp.expression)
            if any(isinstance(a, sqlglot.exp.Column) and a.name in booleans for a in sides) and \
                    any(isinstance(b, sqlglot.exp.Literal) and not b.is_string for b in sides):
                raise duckdb.BinderException("operator does not exist: boolean = integer")
        duck = tree.sql(dialect="duckdb")
        return db.cursor().execute(duck).to_arrow_table()

    @app.route("/datasearch/api/catalog_jobs/<verb>", methods=["POST"])
    def api(verb):
        body = request.get_json(force=True)
        app.requests.append((verb, body))
        if not isinstance(body.get("clientVersion"), (int, float)):
            return reply(500, "<html>Internal Server Error</html>", "text/html")
        cred = body.get("credential") or {}
        if users.get(cred.get("account_name")) != cred.get("password"):
            return reply(401, "Unauthorized", "text/plain")
        if verb == "submit":
            job = body["catalog_job"]
            try:
                result = run(job["sql"]) if not body.get("skip_syntax_check") else None
            except (duckdb.Error, sqlglot.errors.ParseError) as e:
                return reply(406, f"SQL error: {str(e).splitlines()[0]}", "text/plain")
            jid = next(ids)
            app.jobs[jid] = {"sql": job["sql"], "status": "running", "polls": 0, "result": result,
                             "owner": cred["account_name"], "release": job.get("release_version")}
            return reply(200, {"id": jid, "status": "running"})
        job = app.jobs.get(body.get("id"))
        if job is None or job["owner"] != cred["account_name"]:
            return reply(404, "no such job", "text/plain")
        if verb == "status":
            if job["status"] == "running":
                job["polls"] += 1
                if job["polls"] >= app.polls_to_done:
                    try:
                        job["result"] = job["result"] if job["result"] is not None else run(job["sql"])
                        job["status"] = "done"
                    except duckdb.Error as e:
                        job["status"], job["error"] = "error", str(e).splitlines()[0]
            return reply(200, {"id": body["id"], "status": job["status"], **({"error": job["error"]} if "error" in job else {})})
        if verb == "download":
            t = job["result"].drop_columns([c for c in job["result"].column_names if c == "coord"])
            buf = io.BytesIO()
            pcsv.write_csv(t, buf)
            text = buf.getvalue().decode().replace('"', "")
            head, _, rows = text.partition("\n")
            meta = f"# job_id: {body['id']}\n# sql: {job['sql'].replace(chr(10), ' ')}\n"
            text = meta + "# " + head + "\n" + rows
            if app.truncate:  # the connection broke off in the middle of a row
                text = text[: len(text) // 2]
            return reply(200, text, "text/csv")
        if verb in ("delete", "cancel"):
            if verb == "cancel":
                job["status"] = "cancelled"
            else:
                app.jobs.pop(body["id"], None)
            return reply(200, {})
        return reply(404, "unknown verb", "text/plain")

    def fits_bytes(hdus) -> bytes:
        from astropy.io import fits
        buf = io.BytesIO()
        fits.HDUList(hdus).writeto(buf)
        return buf.getvalue()

    def basic_ok() -> bool:
        a = request.authorization
        return a is not None and users.get(a.username) == a.password

    def cutout_fits(a) -> bytes | None:
        """One DAS cutout (REFERENCE.md §1.5): HDU0 empty, HDU1 image, HDU2 mask, HDU3
        variance; None where the sky has no data ("Rectangle not found in observed area")."""
        from astropy.io import fits
        ra, dec = angle(a["ra"]), angle(a["dec"])
        if min(abs(ra - c[0]) + abs(dec - c[1]) for c in CENTRES) > 1:
            return None
        n = max(1, int(angle(a["sw"]) * 3600 / 0.168))  # HSC pixels are 0.168"
        img = fits.ImageHDU(np.full((n, n), ord(a["filter"][-1]), np.float32), name="IMAGE")
        img.header.update({"CRVAL1": ra, "CRVAL2": dec, "FILTER": a["filter"], "RERUN": a["rerun"],
                           "TYPE": a.get("type", "coadd")})
        return fits_bytes([fits.PrimaryHDU(), img, fits.ImageHDU(np.zeros((n, n), np.int32), name="MASK"),
                           fits.ImageHDU(np.ones((n, n), np.float32), name="VARIANCE")])

    def psf_fits(a) -> bytes | None:
        from astropy.io import fits
        if min(abs(angle(a["ra"]) - c[0]) + abs(angle(a["dec"]) - c[1]) for c in CENTRES) > 1:
            return None
        y, x = np.mgrid[-20:21, -20:21]
        psf = np.exp(-(x ** 2 + y ** 2) / (2 * 2.5 ** 2)).astype(np.float32)
        hdu = fits.PrimaryHDU(psf / psf.sum())
        hdu.header.update({"FILTER": a["filter"], "RA": angle(a["ra"])})
        return fits_bytes([hdu])

    def bulk(make, name) -> Response:
        """A list upload (``#? col ...`` then rows): an uncompressed tar whose members carry
        the line number (from 2); rows without data are left out, as the real service does."""
        import tarfile
        lines = request.files["list"].read().decode().splitlines()
        cols = lines[0].removeprefix("#?").split()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for lineno, line in enumerate(lines[1:], start=2):
                row = dict(zip(cols, line.split()))
                data = make(row)
                if data is not None:
                    info = tarfile.TarInfo(name(lineno, row))
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        out = buf.getvalue()
        if app.truncate:
            out = out[: len(out) // 2]
        return Response(out, mimetype="application/x-tar")

    @app.route("/das_cutout/pdr3/cgi-bin/cutout", methods=["GET", "POST"])
    def das_cutout():
        if not basic_ok():
            return Response("Unauthorized", 401, {"WWW-Authenticate": 'Basic realm="hsc-ssp"'})
        if request.method == "POST":
            app.requests.append(("cutout-bulk", request.files["list"].read().decode()))
            request.files["list"].seek(0)
            return bulk(cutout_fits, lambda n, r: f"arch-230101-000000/{n}-cutout-{r['filter']}-{r['tract']}-"
                                                  f"{r['rerun']}.fits")
        app.requests.append(("cutout", dict(request.args)))
        data = cutout_fits(request.args)
        if data is None:
            return Response("Rectangle not found in observed area", 404, mimetype="text/plain")
        return Response(data, mimetype="application/fits")

    @app.route("/psf/pdr3/cgi/getpsf", methods=["GET", "POST"])
    def getpsf():
        if not basic_ok():
            return Response("Unauthorized", 401, {"WWW-Authenticate": 'Basic realm="hsc-ssp"'})
        if request.method == "POST" and request.args.get("bulk") == "on":
            app.requests.append(("psf-bulk", request.files["list"].read().decode()))
            request.files["list"].seek(0)
            return bulk(psf_fits, lambda n, r: f"{n}-psf-calexp-{r['rerun']}-{r['filter']}-9813-4,4-{r['ra']}-"
                                               f"{r['dec']}.fits")
        app.requests.append(("psf", dict(request.args)))
        data = psf_fits(request.args)
        if data is None:
            return Response("PSF: patch not found in observed area", 404, mimetype="text/plain")
        return Response(data, mimetype="application/fits")

    return app
