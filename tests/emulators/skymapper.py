"""A loopback emulation of SkyMapper's sm-cone and SIAP services (docs/upstreams.md §3.1-3.2; no
recorded response exists publicly, so it follows the reference).  SIAP: ``/siap/{dr}/query``
(``POS=ra,dec``, ``SIZE``, ``BAND``, ``INTERSECT``, ``MJD_START/END``; CSV rows with
``unique_image_id, band, image_type, exptime, mjd_obs, mean_fwhm, zpapprox, get_fits, get_mask``)
and ``/siap/{dr}/get_image`` (FITS cutouts, ``SIZE`` at most 0.17 deg).  sm-cone: ``GET /sm-cone/public/query`` with
``RA``, ``DEC``, ``SR`` (deg), ``VERB`` (1: id and position; 2: + PSF magnitudes; 3: all),
``CATALOG`` (``dr2.master``, ``dr4.master``; default ``dr4.master``) and ``RESPONSEFORMAT``
(``CSV`` or ``VOTABLE``), rows sorted by distance from the centre.

The sky is synthetic and reproducible (numpy seed 4510): 1500 objects within 1 deg of each of
two fields, one of them the position in the customer's slides (RA 33.639837321,
Dec -0.766719986), with every column of the bundled metadata filled in its declared type.
``app.requests`` records the query parameters of every request; ``app.catalogue(name)``
gives the full synthetic table (pyarrow) for comparisons.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
from flask import Flask, Response, request
from vo_gateway_skymapper.metadata import BUNDLED

from gateway.sky import separation

from . import column_values, discs

FIELDS = [(33.639837321, -0.766719986), (200.45, -45.0)]


def synthetic(catalog: str, n_per_field: int = 1500, seed: int = 4510, extra_fields=()) -> pa.Table:
    """Reproducible rows of a master catalogue in 1-degree discs around ``FIELDS`` (and
    ``extra_fields``).  Made once per arguments (an Arrow table is immutable)."""
    return _synthetic(catalog, n_per_field, seed, tuple(tuple(f) for f in extra_fields))


@functools.cache
def _synthetic(catalog: str, n_per_field: int, seed: int, extra_fields: tuple) -> pa.Table:
    table = BUNDLED[catalog]("x")
    rng = np.random.default_rng(seed + (0 if catalog == "dr2.master" else 1))
    all_ra, all_dec = discs(rng, [*FIELDS, *extra_fields], n_per_field, 1.0)
    n = len(all_ra)
    cols = {}
    for c in table.columns:
        if c.name == "object_id":
            v = np.arange(1, n + 1, dtype=np.int64) + (100_000_000 if catalog == "dr4.master" else 0)
        elif c.name == "raj2000":
            v = all_ra
        elif c.name == "dej2000":
            v = all_dec
        else:
            v = column_values(c, n, rng, mags=(12, 21), text="SMSS J{i:012d}")
        mask = None
        if c.name.startswith("e_") or c.name.endswith("_dist"):
            mask = rng.uniform(0, 1, n) < 0.1  # some nulls
        cols[c.name] = pa.array(v, mask=mask)
    return pa.table(cols)


def synthetic_photometry(master: pa.Table, release: str, epochs: int = 4, seed: int = 4511) -> pa.Table:
    """Per-epoch rows of every ``master`` object: ``epochs`` detections each, 0.2" scatter
    around the mean position, one filter and image per detection."""
    rng = np.random.default_rng(seed + (0 if release == "dr2" else 1))
    n = master.num_rows * epochs
    oid = np.repeat(master["object_id"].to_numpy(), epochs)
    jitter = rng.normal(0, 0.2 / 3600, (2, n))
    cosd = np.cos(np.radians(np.repeat(master["dej2000"].to_numpy(), epochs)))
    return pa.table(
        {
            "object_id": oid,
            "image_id": rng.integers(1_000_000, 9_999_999, n, dtype=np.int64),
            "ra_img": np.repeat(master["raj2000"].to_numpy(), epochs) + jitter[0] / cosd,
            "decl_img": np.repeat(master["dej2000"].to_numpy(), epochs) + jitter[1],
            "filter": pa.array(rng.choice(list("uvgriz"), n)),
            "mag_psf": rng.uniform(12, 21, n).astype(np.float32),
            "e_mag_psf": rng.uniform(0.01, 0.2, n).astype(np.float32),
            "flags": rng.integers(0, 4, n).astype(np.int16),
            "nimaflags": rng.integers(0, 3, n).astype(np.int32),
        }
    )


def skymapper_app(extra_fields=()) -> Flask:
    app = Flask("skymapper-emulator")
    data = {name: synthetic(name, extra_fields=extra_fields) for name in BUNDLED if name.endswith(".master")}
    for rel in ("dr2", "dr4"):
        data[f"{rel}.photometry"] = synthetic_photometry(data[f"{rel}.master"], rel)
    app.requests = []  # type: ignore[attr-defined]
    app.catalogue = data.__getitem__  # type: ignore[attr-defined]

    @app.route("/sm-cone/public/query")
    def cone():
        app.requests.append(dict(request.args))
        a = request.args
        try:
            ra, dec, sr = float(a["RA"]), float(a["DEC"]), float(a["SR"])
        except (KeyError, ValueError):
            return Response("Error: RA, DEC and SR are required numbers", 400, mimetype="text/plain")
        cat = a.get("CATALOG", "dr4.master")
        if cat not in data:
            return Response(f"Error: unknown catalog {cat}", 400, mimetype="text/plain")
        t = data[cat]
        meta = BUNDLED[cat]("x")
        d = separation(t[meta.ra_column].to_numpy(), t[meta.dec_column].to_numpy(), ra, dec)
        idx = np.nonzero(d <= sr)[0]
        idx = idx[np.argsort(d[idx], kind="stable")]
        verb = int(a.get("VERB", 2))
        if verb <= 1:
            names = ["object_id", meta.ra_column, meta.dec_column]
        elif verb == 2:
            names = [c.name for c in meta.columns if c.principal]
        else:
            names = [c.name for c in meta.columns]
        out = t.take(pa.array(idx, pa.int64())).select(names)
        if a.get("RESPONSEFORMAT", "VOTABLE").upper() == "CSV":
            buf = io.BytesIO()
            pcsv.write_csv(out, buf, pcsv.WriteOptions(quoting_style="needed"))
            text = buf.getvalue().replace(b'"', b"")
            return Response(text, mimetype="text/csv")
        from astropy.io.votable import from_table
        from astropy.table import Table

        vot = from_table(Table(out.to_pydict()))
        buf = io.BytesIO()
        vot.to_xml(buf)
        return Response(buf.getvalue(), mimetype="text/xml")

    add_siap(app)
    return app


# -- SIAP (docs/upstreams.md §3.2) -------------------------------------------------------------------
BAND_ORDER = "uvgriz"


def synthetic_images(seed: int = 4510) -> list[dict]:
    """Exposures covering both fields: per field, 2 epochs x 6 bands x 2 CCDs, main (100 s) and
    short (5 s) images alternating; each CCD covers 0.5 deg (RA) x 1.0 deg (Dec)."""
    rng = np.random.default_rng(seed)
    out = []
    for f, (ra0, dec0) in enumerate(FIELDS):
        for epoch in range(2):
            for b, band in enumerate(BAND_ORDER):
                stamp = f"2014{4 + f:02d}{10 + epoch:02d}12{b:02d}{epoch:02d}21"
                for ccd in (10, 11):
                    off = (ccd - 10.5) * 0.5
                    short = (epoch + b) % 2 == 1
                    out.append(
                        {
                            "unique_image_id": f"{stamp}-{ccd}",
                            "band": band,
                            "image_type": "short" if short else "main",
                            "exptime": 5.0 if short else 100.0,
                            "mjd_obs": 56770.5 + 30 * f + epoch + b / 100,
                            "mean_fwhm": float(rng.uniform(2, 3.5)),
                            "zpapprox": float(rng.uniform(25, 26.5)),
                            "ra": ra0 + off / np.cos(np.radians(dec0)),
                            "dec": dec0,
                            "w": 0.5,
                            "h": 1.0,
                        }
                    )
    return out


def _overlap(img, ra, dec, w, h) -> bool:
    c = np.cos(np.radians(dec))
    return abs((img["ra"] - ra) * c) <= (img["w"] + w) / 2 and abs(img["dec"] - dec) <= (img["h"] + h) / 2


def add_siap(app: Flask) -> None:
    images = synthetic_images()

    @app.route("/siap/<dr>/query")
    def siap_query(dr):
        app.requests.append({"_path": request.path, **dict(request.args)})
        a = request.args
        try:
            ra, dec = (float(x) for x in a["POS"].split(","))
            size = [float(x) for x in a.get("SIZE", "0.0833").split(",")]
        except (KeyError, ValueError):
            return Response("Error: POS=ra,dec and SIZE=deg[,deg] are required", 400, mimetype="text/plain")
        w, h = (size[0], size[-1])
        bands = a.get("BAND", "all").lower()
        wanted = set(BAND_ORDER) if bands == "all" else set(bands.split(","))
        mode = a.get("INTERSECT", "OVERLAPS").upper()
        lo, hi = float(a.get("MJD_START", 0)), float(a.get("MJD_END", 1e6))
        base = request.host_url.rstrip("/") + f"/siap/{dr}"
        rows = []
        for img in images:
            hit = _overlap(img, ra, dec, 0, 0) if mode == "CENTER" else _overlap(img, ra, dec, w, h)
            if hit and img["band"] in wanted and lo <= img["mjd_obs"] <= hi:
                q = f"IMAGE={img['unique_image_id']}&SIZE={a.get('SIZE', '0.0833')}&POS={ra},{dec}"
                rows.append(
                    {
                        k: img[k]
                        for k in (
                            "unique_image_id",
                            "band",
                            "image_type",
                            "exptime",
                            "mjd_obs",
                            "mean_fwhm",
                            "zpapprox",
                        )
                    }
                    | {"get_fits": f"{base}/get_image?{q}&FORMAT=fits", "get_mask": f"{base}/get_image?{q}&FORMAT=mask"}
                )
        names = [
            "unique_image_id",
            "band",
            "image_type",
            "exptime",
            "mjd_obs",
            "mean_fwhm",
            "zpapprox",
            "get_fits",
            "get_mask",
        ]
        import csv

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")  # URLs with commas are quoted
        writer.writerow(names)
        writer.writerows([[r[n] for n in names] for r in rows])
        return Response(buf.getvalue(), mimetype="text/csv")

    @app.route("/siap/<dr>/get_image")
    def get_image(dr):
        from astropy.io import fits

        app.requests.append({"_path": request.path, **dict(request.args)})
        a = request.args
        img = next((i for i in images if i["unique_image_id"] == a.get("IMAGE")), None)
        if img is None:
            return Response("Error: unknown IMAGE", 404, mimetype="text/plain")
        size = [float(x) for x in a.get("SIZE", "0.0833").split(",")]
        if not 0 < size[0] <= 0.17:
            return Response("SIZE[0] must be between 0 and 0.17 deg", 400, mimetype="text/plain")
        ra, dec = (float(x) for x in a["POS"].split(","))
        n = max(1, int(round(size[0] * 3600 / 2.0)))  # 2"/pixel keeps the emulated cutouts small
        hdu = fits.PrimaryHDU(np.zeros((n, n), np.float32))
        hdr = hdu.header
        hdr.update(
            {
                "CTYPE1": "RA---TAN",
                "CTYPE2": "DEC--TAN",
                "CRVAL1": ra,
                "CRVAL2": dec,
                "CRPIX1": (n + 1) / 2,
                "CRPIX2": (n + 1) / 2,
                "CDELT1": -2.0 / 3600,
                "CDELT2": 2.0 / 3600,
                "FILTER": img["band"],
                "IMAGEID": img["unique_image_id"],
                "ZPAPPROX": img["zpapprox"],
                "QAFWHM": img["mean_fwhm"],
            }
        )
        buf = io.BytesIO()
        hdu.writeto(buf)
        return Response(buf.getvalue(), mimetype="image/fits")
