"""A loopback emulation of the MAST catalogs API (docs/upstreams.md §2.1-2.4) over a reproducible
synthetic sky with the real column sets: HSC v3 summary (magaper2/magauto, 418 columns) and
detailed around IC 1613, Pan-STARRS DR2 mean (124 columns) around the PS1 docs' example.

``/api/v0.1/{path}.csv`` and ``/api/v0.1/{path}/metadata``: GET query string, or POST (form, or
JSON body for Pan-STARRS; a form POST to Pan-STARRS answers HTTP 422 as the real one does since
2023).  Parameters: ``ra``/``dec``/``radius`` (radius <= 0.5 deg else 400), ``columns=[a,b]``
(or repeated, or a JSON list), ``col=value`` (repeated = OR), ``col.gt|gte|lt|lte|like=value``,
``sort_by=col[.desc]``, ``pagesize`` (default 50000), ``page`` (1-based).  CSV: header line, then
rows; Pan-STARRS writes -999 for null numbers, HSC leaves them empty.  ``app.requests`` keeps
(path, method, params) of every call; ``app.table(path)`` the full synthetic table.
"""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
from flask import Flask, Response, request
from vo_gateway_mast.metadata import BUNDLED

from gateway.sky import separation

from . import NP, column_values, discs

IC1613 = (16.2016962, 2.1194959)
PS1_FIELD = (210.802429, 54.348750)


def synthetic(path: str, seed: int = 1613, extra_fields=()) -> pa.Table:
    """Reproducible rows of a catalog: 3000 in a 0.6 deg disc around its field (and each of
    ``extra_fields``), declared types, masked magnitudes.  Made once per arguments (an Arrow
    table is immutable)."""
    return _synthetic(path, seed, tuple(tuple(f) for f in extra_fields))


@functools.cache
def _synthetic(path: str, seed: int, extra_fields: tuple) -> pa.Table:
    table = BUNDLED[path]("x", "y")
    rng = np.random.default_rng(seed + sum(map(ord, path)))
    if path.startswith("hsc/v3/detailed"):
        summary = synthetic("hsc/v3/summary/magaper2", seed, extra_fields)
        rows = []
        for mid, ra, dec, n475, n814 in zip(
            *(summary[c].to_pylist() for c in ("MatchID", "MatchRA", "MatchDec", "A_F475W_N", "A_F814W_N"))
        ):
            for filt, n in (("F475W", min(n475 or 0, 6)), ("F814W", min(n814 or 0, 6))):
                for k in range(n):
                    rows.append(
                        {
                            "MatchID": mid,
                            "MatchRA": ra,
                            "MatchDec": dec,
                            "SourceID": mid * 100 + len(rows) % 97,
                            "Filter": filt,
                            "Detector": "ACS/WFC",
                            "Instrument": "ACS",
                            "StartMJD": 53500.0 + 7 * k,
                            "StopMJD": 53500.01 + 7 * k,
                            "WaveLength": float(filt[1:4]),
                            "ExposureTime": 500.0,
                            "MagAper2": 22.0 + rng.normal(0, 0.3),
                            "Flags": 0,
                            "ImageName": f"hst_10505_{k:02d}_acs_wfc_{filt.lower()}",
                        }
                    )
        cols = {}
        for c in table.columns:
            vals = [r.get(c.name) for r in rows]
            cols[c.name] = pa.array(vals, ARROWT(c.datatype))
        return pa.table(cols)
    centre = PS1_FIELD if path.startswith("panstarrs") else IC1613
    ra, dec = discs(rng, [centre, *extra_fields], 3000, 0.6)
    n = len(ra)
    cols = {}
    for c in table.columns:
        name = c.name
        if name in (table.ra_column,):
            v = ra
        elif name in (table.dec_column,):
            v = dec
        elif name == table.id_column:
            v = np.arange(1, n + 1, dtype=np.int64) * 1000 + (7 if path.startswith("hsc") else 123456789000)
        elif name.endswith("_N"):
            v = rng.integers(0, 30, n).astype(NP[c.datatype])
        else:
            v = column_values(c, n, rng)
        mask = None
        if c.unit == "mag" or name.endswith("_MAD"):
            mask = rng.uniform(0, 1, n) < (0.2 if path.startswith("panstarrs") else 0.85)
            if name.startswith(("A_F475W", "A_F814W")):
                mask = rng.uniform(0, 1, n) < 0.1
        cols[name] = pa.array(v, mask=mask)
    return pa.table(cols)


def ARROWT(dt):  # noqa: N802
    return {
        "short": pa.int16(),
        "int": pa.int32(),
        "long": pa.int64(),
        "float": pa.float32(),
        "double": pa.float64(),
        "unsignedByte": pa.uint8(),
        "boolean": pa.bool_(),
    }.get(dt, pa.string())


def mast_app(extra_fields=(), latency: float = 0.0) -> Flask:
    """``extra_fields``: more (ra, dec) centres of every catalog's rows; ``latency``: seconds
    each catalog query waits before answering (a remote service's round trip)."""
    import time

    app = Flask("mast-emulator")
    data = {p: synthetic(p, extra_fields=extra_fields) for p in BUNDLED}
    app.requests = []  # type: ignore[attr-defined]
    app.table = data.__getitem__  # type: ignore[attr-defined]

    def error(status, text):
        return Response(text, status, mimetype="text/plain")

    @app.route("/api/v0.1/<path:path>/metadata", methods=["GET"])
    def metadata(path):
        app.requests.append((path, "metadata", {}))
        if path.startswith("panstarrs/dr2/mean"):
            from vo_gateway_mast.metadata import DATA

            return Response((DATA / "panstarrs_dr2_mean_metadata.json").read_text(), mimetype="application/json")
        t = BUNDLED[path]("x", "y")
        return Response(
            json.dumps([{"name": c.name, "type": c.datatype, "description": c.description} for c in t.columns]),
            mimetype="application/json",
        )

    @app.route("/api/v0.1/<path:path>.csv", methods=["GET", "POST"])
    def query(path):
        if latency:
            time.sleep(latency)
        if path not in data:
            return error(404, f"unknown catalog {path}")
        ps1 = path.startswith("panstarrs")
        if request.method == "POST" and ps1 and not request.is_json:
            return Response(
                json.dumps({"detail": [{"msg": "form-encoded bodies are not accepted"}]}),
                422,
                mimetype="application/json",
            )
        if request.is_json:
            params = {k: (v if isinstance(v, list) else [v]) for k, v in request.get_json().items()}
        else:
            params = {}
            for k, v in list(request.args.items(multi=True)) + list(request.form.items(multi=True)):
                params.setdefault(k, []).append(v)
        app.requests.append((path, request.method, params))
        t = data[path]
        meta = BUNDLED[path]("x", "y")
        lower = {c.name.lower(): c.name for c in meta.columns}
        keep = np.ones(t.num_rows, bool)
        dist = None
        if "ra" in params:
            ra, dec, radius = (float(params[k][0]) for k in ("ra", "dec", "radius"))
            if radius > 0.5:
                return error(400, "radius must be <= 0.5 degrees")
            dist = separation(t[meta.ra_column].to_numpy(), t[meta.dec_column].to_numpy(), ra, dec)
            keep &= dist <= radius
        for key, values in params.items():
            if key in ("ra", "dec", "radius", "columns", "sort_by", "pagesize", "page", "format"):
                continue
            name, _, op = key.partition(".")
            col = lower.get(name.lower())
            if col is None:
                return error(400, f"invalid column: {name}")
            arr = t[col].to_numpy(zero_copy_only=False)
            isnum = pa.types.is_integer(t[col].type) or pa.types.is_floating(t[col].type)
            cast = (lambda x: float(x)) if isnum else str  # noqa: E731
            valid = ~np.asarray(t[col].is_null().to_numpy(zero_copy_only=False))
            if op == "":
                hit = np.zeros(t.num_rows, bool)
                for v in values:
                    hit |= valid & (arr == cast(v))
            elif op == "like":
                import re as _re

                pats = [_re.compile("^" + _re.escape(v).replace("%", ".*").replace("_", ".") + "$") for v in values]
                hit = np.array([ok and any(p.match(str(x)) for p in pats) for ok, x in zip(valid, arr)], bool)
            elif op in ("gt", "gte", "lt", "lte"):
                hit = valid.copy()
                for v in values:
                    f = {"gt": np.greater, "gte": np.greater_equal, "lt": np.less, "lte": np.less_equal}[op]
                    with np.errstate(invalid="ignore"):
                        hit &= f(np.where(valid, arr, 0), cast(v))
            else:
                return error(400, f"unsupported operator {op}")
            keep &= hit
        cols = params.get("columns")
        if cols and len(cols) == 1 and cols[0].startswith("["):
            cols = [c.strip() for c in cols[0].strip("[]").split(",") if c.strip()]
        names = [lower[c.lower()] for c in cols] if cols else [c.name for c in meta.columns]
        if any(c.lower() not in lower for c in (cols or [])):
            return error(400, "invalid column in columns")
        idx = np.nonzero(keep)[0]
        for s in params.get("sort_by", []):
            name, _, direction = s.partition(".")
            key = t[lower[name.lower()]].to_numpy(zero_copy_only=False)[idx]
            order = np.argsort(key, kind="stable")
            idx = idx[order[::-1] if direction == "desc" else order]
        if "sort_by" not in params and dist is not None:
            idx = idx[np.argsort(dist[idx], kind="stable")]
        pagesize = int(params.get("pagesize", ["50000"])[0])
        page = int(params.get("page", ["1"])[0])
        idx = idx[(page - 1) * pagesize : page * pagesize]
        out = t.take(pa.array(idx, pa.int64())).select(names)
        if ps1:  # Pan-STARRS writes -999 for null numbers
            out = pa.table(
                {n: (out[n].fill_null(-999) if pa.types.is_floating(out[n].type) else out[n]) for n in out.column_names}
            )
        buf = io.BytesIO()
        pcsv.write_csv(out, buf)
        return Response(buf.getvalue().replace(b'"', b""), mimetype="text/csv")

    @app.route("/cgi-bin/fitscut.cgi")
    def fitscut():
        """HLA fitscut (docs/upstreams.md §2.5): red=<image>, ra/dec, size (pixels or ALL), format."""
        from astropy.io import fits

        a = {k.lower(): v for k, v in request.args.items()}
        app.requests.append(("fitscut", "GET", dict(a)))
        names = set(data["hsc/v3/detailed"]["ImageName"].to_pylist())
        if a.get("red") not in names:
            return error(400, f"no such dataset {a.get('red')}")
        n = 400 if a.get("size", "ALL").upper() == "ALL" else int(a["size"])
        if a.get("format", "fits") in ("jpeg", "jpg", "png"):
            return Response(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64) + b"\xff\xd9", mimetype="image/jpeg")
        ra, dec = float(a.get("ra", IC1613[0])), float(a.get("dec", IC1613[1]))
        hdu = fits.PrimaryHDU(np.zeros((n, n), np.float32))
        hdu.header.update(
            {
                "CTYPE1": "RA---TAN",
                "CTYPE2": "DEC--TAN",
                "CRVAL1": ra,
                "CRVAL2": dec,
                "CRPIX1": (n + 1) / 2,
                "CRPIX2": (n + 1) / 2,
                "CDELT1": -0.05 / 3600,
                "CDELT2": 0.05 / 3600,
                "HLANAME": a["red"],
            }
        )
        buf = io.BytesIO()
        hdu.writeto(buf)
        return Response(buf.getvalue(), mimetype="image/fits")

    ps1_fixture = (
        Path(__file__).resolve().parents[1]
        / "fixtures"
        / "mast"
        / "ps1filenames_ra83.633210_dec22.014460_RECONSTRUCTED.txt"
    ).read_text()

    @app.route("/ps1/cgi-bin/ps1filenames.py")
    def ps1filenames():
        """PS1 file listing (docs/upstreams.md §2.5): the real recorded rows at the recorded position,
        the same layout elsewhere; warps are two epochs per band."""
        a = request.args
        app.requests.append(("ps1filenames", "GET", dict(a)))
        ra, dec = float(a["ra"]), float(a["dec"])
        filters = a.get("filters", "grizy")
        types = a.get("type", "stack").split(",")
        head, *rows = ps1_fixture.strip().splitlines()
        if abs(ra - 83.63321) > 1e-4 or abs(dec - 22.01446) > 1e-4:
            cell = (int(ra * 7) % 2643, int((dec + 90) * 3) % 100)
            rows = [
                f"{cell[0]} {cell[1]} {ra} {dec} {f} 0.0 stack /rings.v3.skycell/{cell[0]}/{cell[1]:03d}/"
                f"rings.v3.skycell.{cell[0]}.{cell[1]:03d}.stk.{f}.unconv.fits "
                f"rings.v3.skycell.{cell[0]}.{cell[1]:03d}.stk.{f}.unconv.fits 0"
                for f in "girzy"
            ]
        out = [r for r in rows if r.split()[4] in filters and "stack" in types]
        if "warp" in types:
            p, sc = rows[0].split()[:2]
            for f in filters:
                for mjd in (55200.25, 56300.5):
                    name = f"rings.v3.skycell.{p}.{int(sc):03d}.wrp.{f}.{mjd}.fits"
                    out.append(
                        f"{p} {sc} {ra} {dec} {f} {mjd} warp /rings.v3.skycell/{p}/{int(sc):03d}/{name} {name} 0"
                    )
        return Response("\n".join([head, *out]) + "\n", mimetype="text/plain")

    @app.route("/ps1/cgi-bin/fitscut.cgi")
    def ps1_fitscut():
        from astropy.io import fits

        a = request.args
        app.requests.append(("ps1fitscut", "GET", dict(a)))
        n = int(a.get("size", 240))
        hdu = fits.PrimaryHDU(np.zeros((n, n), np.float32))
        hdu.header.update(
            {
                "CTYPE1": "RA---TAN",
                "CTYPE2": "DEC--TAN",
                "CRVAL1": float(a["ra"]),
                "CRVAL2": float(a["dec"]),
                "CRPIX1": (n + 1) / 2,
                "CRPIX2": (n + 1) / 2,
                "CDELT1": -0.25 / 3600,
                "CDELT2": 0.25 / 3600,
                "PS1FILE": a["red"],
            }
        )
        buf = io.BytesIO()
        hdu.writeto(buf)
        return Response(buf.getvalue(), mimetype="image/fits")

    return app
