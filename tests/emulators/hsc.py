"""A loopback emulation of the HSC-SSP catalog-job API (docs/upstreams.md §1.2; no recorded response
exists, so it follows the reference and the official tools' code):

``POST {base}submit|status|download|delete|cancel|preview``, JSON bodies with
``credential: {account_name, password}`` and a numeric ``clientVersion`` (a string answers 500).
Bad credentials -> 401; SQL that does not run -> 406 with the error text (syntax check) or, with
``skip_syntax_check``, ``status: "error"`` later.  Jobs go ``running`` -> ``done`` after
``app.polls_to_done`` status calls.  ``download`` gives CSV with ``#`` metainfo lines and the
header line prefixed ``# ``.  The SQL runs on a real PostgreSQL, as on the real service
(docs/upstreams.md §1.3: PostgreSQL with ``cube``/``earthdistance``), over a synthetic sky (schemas
``s23b_wide`` and ``pdr3_wide``: every table of the bundled metadata and ``photoz_mizuki``, one
row per ``forced`` object; ``coord`` an ``earth`` value with a GiST index) with the stored functions
``coneSearch(coord, ra, dec, arcsec)`` (an ``earth_box`` test the index answers, then the exact
distance) and ``boxSearch(coord, ra1, ra2, dec1, dec2)`` (with its
RA-wrap rule), so PostgreSQL itself judges the dialect (no boolean = integer, no
round(double precision, int), ...).  The submit-time syntax check is PostgreSQL's ``EXPLAIN``.
``app.jobs`` and ``app.requests`` are kept for the tests.
"""

from __future__ import annotations

import functools
import io
import itertools

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pcsv
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


PG_TYPES = {
    "boolean": "boolean",
    "short": "smallint",
    "int": "integer",
    "long": "bigint",
    "float": "real",
    "double": "double precision",
    "char": "text",
}
FUNCTIONS = """
CREATE EXTENSION IF NOT EXISTS cube;
CREATE EXTENSION IF NOT EXISTS earthdistance;
CREATE FUNCTION coneSearch(c earth, ra0 float8, dec0 float8, r_arcsec float8) RETURNS boolean AS $$
    SELECT earth_box(ll_to_earth(dec0, ra0), radians(r_arcsec / 3600.0) * earth()) @> c
       AND earth_distance(c, ll_to_earth(dec0, ra0)) <= radians(r_arcsec / 3600.0) * earth() $$
    LANGUAGE sql IMMUTABLE;
CREATE FUNCTION boxSearch(c earth, ra1 float8, ra2 float8, dec1 float8, dec2 float8) RETURNS boolean AS $$
    SELECT latitude(c) BETWEEN dec1 AND dec2 AND CASE
        WHEN ra1 <= ra2 AND ra2 <= 360 THEN ra BETWEEN ra1 AND ra2
        WHEN ra2 > 360 THEN ra >= ra1 OR ra <= ra2 - 360
        ELSE ra BETWEEN ra2 AND ra1 END
    FROM (SELECT (longitude(c) + 360)::numeric % 360 AS ra) AS s $$ LANGUAGE sql IMMUTABLE;
CREATE FUNCTION tractSearch(object_id bigint, t integer) RETURNS boolean AS $$
    SELECT (object_id >> 42) = t $$ LANGUAGE sql IMMUTABLE;
CREATE FUNCTION tractSearch(object_id bigint, t1 integer, t2 integer) RETURNS boolean AS $$
    SELECT (object_id >> 42) BETWEEN t1 AND t2 $$ LANGUAGE sql IMMUTABLE;
"""
_DATABASES = itertools.count(1)


@functools.cache
def _build(pg_url: str, n: int, missing: tuple, centres: tuple) -> tuple[str, dict[str, pa.Table]]:
    """The emulator's tables (``forced`` and the other rerun tables, one row per object) and the
    DSN of a new PostgreSQL database holding them; made once per arguments."""
    rng = np.random.default_rng(4242)
    ra, dec = discs(rng, list(centres), n, 0.2)
    m = len(ra)
    tract = np.where(np.arange(m) % 3 == 0, 9814, 9813).astype(np.int64)
    object_id = (tract << 42) + np.arange(m, dtype=np.int64)  # 64-bit ids (tract << 42 | ...), two tracts
    special = {
        "object_id": object_id,
        "ra": ra,
        "dec": dec,
        "isprimary": rng.uniform(0, 1, m) < 0.9,
        "i_cmodel_flux": rng.lognormal(7, 1.5, m).astype(np.float32),
    }
    forced = pa.table(
        {
            c.name: special.get(c.name, _values(c, m, rng))
            for c in metadata.forced("x", True).columns
            if c.name not in missing
        }
    )
    tables = {"forced": forced}
    for t in metadata.rerun_tables("x", "s23b_wide", True, ["photoz_mizuki"])[1:]:  # one row per forced object
        tables[t.name] = pa.table(
            {
                c.name: object_id
                if c.name == "object_id"
                else special[c.name]
                if c.name in ("ra", "dec")
                else _values(c, m, rng)
                for c in t.columns
            }
        )
    server = pg_url.replace("postgresql+psycopg://", "postgresql://")
    dbname = f"hsc_emulator_{next(_DATABASES)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {dbname}")
        admin.execute(f"CREATE DATABASE {dbname}")
    dsn = server.rsplit("/", 1)[0] + "/" + dbname
    types = {
        t.name: {c.name: c.datatype for c in t.columns}
        for t in metadata.rerun_tables("x", "s23b_wide", True, ["photoz_mizuki"])
    }
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(FUNCTIONS)
        con.execute("CREATE SCHEMA s23b_wide; CREATE SCHEMA pdr3_wide")
        for name, rows in tables.items():
            cols = ", ".join(f'"{c}" {PG_TYPES[types[name][c]]}' for c in rows.column_names)
            if "ra" in rows.column_names:
                cols += ', coord earth GENERATED ALWAYS AS (ll_to_earth("dec", ra)) STORED'
            con.execute(f"CREATE TABLE s23b_wide.{name} ({cols})")
            buf = io.BytesIO()
            pcsv.write_csv(rows, buf)
            names = ", ".join(f'"{c}"' for c in rows.column_names)
            copy = f"COPY s23b_wide.{name} ({names}) FROM STDIN WITH (FORMAT csv, HEADER true)"
            with con.cursor().copy(copy) as cp:
                cp.write(buf.getvalue())
            if "ra" in rows.column_names:
                con.execute(f"CREATE INDEX ON s23b_wide.{name} USING gist (coord)")
                con.execute(f"ANALYZE s23b_wide.{name} (object_id, coord)")
            con.execute(f"CREATE VIEW pdr3_wide.{name} AS SELECT * FROM s23b_wide.{name}")
    return dsn, tables


def hsc_app(
    pg_url: str, users: dict[str, str] | None = None, n: int = 2000, missing=("a_g",), centres=tuple(CENTRES)
) -> Flask:
    """``pg_url``: a PostgreSQL server (``postgresql://...``, the tests' ``postgres_url``) in
    which the emulator makes the database of its sky.  ``missing``: columns of the bundled
    metadata the emulated tables lack (schema drift).  The sky and its database depend only on
    these arguments and are built once per server and arguments (the SQL run is read-only)."""
    app = Flask("hsc-emulator")
    users = users or {"alice": "a-pw"}
    app.requests, app.jobs, app.polls_to_done, app.truncate = [], {}, 2, False  # type: ignore[attr-defined]
    ids = itertools.count(1000)
    dsn, tables = _build(pg_url, n, tuple(missing), tuple(map(tuple, centres)))
    app.forced = tables["forced"]  # type: ignore[attr-defined]
    app.photoz = tables["photoz_mizuki"]  # type: ignore[attr-defined]
    app.forced2 = tables["forced2"]  # type: ignore[attr-defined]

    def reply(status, body, mimetype="application/json"):
        import json

        return Response(json.dumps(body) if mimetype == "application/json" else body, status, mimetype=mimetype)

    def run(sql: str, explain: bool = False) -> bytes | None:
        """The result as PostgreSQL writes CSV (header line first), or only the plan check."""
        with psycopg.connect(dsn, autocommit=True) as con:
            if explain:
                con.execute("EXPLAIN " + sql)
                return None
            out = io.BytesIO()
            with con.cursor().copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)") as cp:
                for chunk in cp:
                    out.write(chunk)
            return out.getvalue()

    def pg_error(e: psycopg.Error) -> str:
        return f"SQL error: {str(e).splitlines()[0]}"

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
                if not body.get("skip_syntax_check"):
                    run(job["sql"], explain=True)
            except psycopg.Error as e:
                return reply(406, pg_error(e), "text/plain")
            jid = next(ids)
            app.jobs[jid] = {
                "sql": job["sql"],
                "status": "running",
                "polls": 0,
                "result": None,
                "owner": cred["account_name"],
                "release": job.get("release_version"),
            }
            return reply(200, {"id": jid, "status": "running"})
        job = app.jobs.get(body.get("id"))
        if job is None or job["owner"] != cred["account_name"]:
            return reply(404, "no such job", "text/plain")
        if verb == "status":
            if job["status"] == "running":
                job["polls"] += 1
                if job["polls"] >= app.polls_to_done:
                    try:
                        job["result"] = run(job["sql"])
                        job["status"] = "done"
                    except psycopg.Error as e:
                        job["status"], job["error"] = "error", str(e).splitlines()[0]
            return reply(
                200, {"id": body["id"], "status": job["status"], **({"error": job["error"]} if "error" in job else {})}
            )
        if verb == "download":
            head, _, rows = job["result"].decode().partition("\n")
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
        """One DAS cutout (docs/upstreams.md §1.5): HDU0 empty, HDU1 image, HDU2 mask, HDU3
        variance; None where the sky has no data ("Rectangle not found in observed area")."""
        from astropy.io import fits

        ra, dec = angle(a["ra"]), angle(a["dec"])
        if min(abs(ra - c[0]) + abs(dec - c[1]) for c in CENTRES) > 1:
            return None
        # sw/sh are the semi-width and semi-height (downloadCutout.py); HSC pixels are 0.168"
        n = max(1, int(2 * angle(a["sw"]) * 3600 / 0.168))
        m = max(1, int(2 * angle(a["sh"]) * 3600 / 0.168))
        img = fits.ImageHDU(np.full((m, n), ord(a["filter"][-1]), np.float32), name="IMAGE")
        img.header.update(
            {"CRVAL1": ra, "CRVAL2": dec, "FILTER": a["filter"], "RERUN": a["rerun"], "TYPE": a.get("type", "coadd")}
        )
        return fits_bytes(
            [
                fits.PrimaryHDU(),
                img,
                fits.ImageHDU(np.zeros((m, n), np.int32), name="MASK"),
                fits.ImageHDU(np.ones((m, n), np.float32), name="VARIANCE"),
            ]
        )

    def psf_fits(a) -> bytes | None:
        from astropy.io import fits

        if min(abs(angle(a["ra"]) - c[0]) + abs(angle(a["dec"]) - c[1]) for c in CENTRES) > 1:
            return None
        y, x = np.mgrid[-20:21, -20:21]
        psf = np.exp(-(x**2 + y**2) / (2 * 2.5**2)).astype(np.float32)
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
                if data is None:
                    continue
                members = [(name(lineno, row), data)]
                if row.get("type") == "warp":  # a tar of the coadd's warps (docs/upstreams.md §1.5)
                    members = [
                        (
                            f"arch-230101-000000/{lineno}-warps-{row['filter']}-9813-{row['rerun']}/warp-{visit}.fits",
                            data,
                        )
                        for visit in (11690 + lineno, 11692 + lineno)
                    ]
                for member, body in members:
                    info = tarfile.TarInfo(member)
                    info.size = len(body)
                    tar.addfile(info, io.BytesIO(body))
        out = buf.getvalue()
        if app.truncate:
            out = out[: len(out) // 2]
        return Response(out, mimetype="application/x-tar")

    def image_service(kind: str, make, name, bulk_on: bool, not_found: str) -> Response:
        """One image CGI: HTTP Basic; a POSTed list (bulk) answers a tar, a GET one FITS."""
        if not basic_ok():
            return Response("Unauthorized", 401, {"WWW-Authenticate": 'Basic realm="hsc-ssp"'})
        if request.method == "POST" and bulk_on:
            app.requests.append((f"{kind}-bulk", request.files["list"].read().decode()))
            request.files["list"].seek(0)
            return bulk(make, name)
        app.requests.append((kind, dict(request.args)))
        data = make(request.args)
        if data is None:
            return Response(not_found, 404, mimetype="text/plain")
        return Response(data, mimetype="application/fits")

    @app.route("/das_cutout/pdr3/cgi-bin/cutout", methods=["GET", "POST"])
    def das_cutout():
        return image_service(
            "cutout",
            cutout_fits,
            lambda n, r: f"arch-230101-000000/{n}-cutout-{r['filter']}-{r['tract']}-{r['rerun']}.fits",
            True,
            "Rectangle not found in observed area",
        )

    @app.route("/psf/pdr3/cgi/getpsf", methods=["GET", "POST"])
    def getpsf():
        return image_service(
            "psf",
            psf_fits,
            lambda n, r: f"{n}-psf-calexp-{r['rerun']}-{r['filter']}-9813-4,4-{r['ra']}-{r['dec']}.fits",
            request.args.get("bulk") == "on",
            "PSF: patch not found in observed area",
        )

    return app
