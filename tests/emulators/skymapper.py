"""A loopback emulation of SkyMapper's sm-cone service (REFERENCE.md §3.1; no recorded
response exists publicly, so it follows the reference): ``GET /sm-cone/public/query`` with
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

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
from flask import Flask, Response, request

from vo_gateway_skymapper.metadata import BUNDLED

FIELDS = [(33.639837321, -0.766719986), (200.45, -45.0)]
NP = {"short": np.int16, "int": np.int32, "long": np.int64, "float": np.float32, "double": np.float64}


def synthetic(catalog: str, n_per_field: int = 1500, seed: int = 4510) -> pa.Table:
    table = BUNDLED[catalog]("x")
    rng = np.random.default_rng(seed + (0 if catalog == "dr2.master" else 1))
    ras, decs = [], []
    for ra0, dec0 in FIELDS:
        r = np.sqrt(rng.uniform(0, 1, n_per_field)) * 1.0
        th = rng.uniform(0, 2 * np.pi, n_per_field)
        decs.append(dec0 + r * np.sin(th))
        ras.append(ra0 + r * np.cos(th) / np.cos(np.radians(dec0)))
    n = n_per_field * len(FIELDS)
    cols = {}
    for c in table.columns:
        if c.name == "object_id":
            v = np.arange(1, n + 1, dtype=np.int64) + (100_000_000 if catalog == "dr4.master" else 0)
        elif c.name == "raj2000":
            v = np.concatenate(ras) % 360
        elif c.name == "dej2000":
            v = np.concatenate(decs)
        elif c.datatype == "char":
            v = np.array([f"SMSS J{i:012d}" for i in range(n)])
        elif c.unit == "mag":
            v = rng.uniform(12, 21, n).astype(NP[c.datatype])
        else:
            v = rng.integers(0, 100, n).astype(NP[c.datatype]) if c.datatype in ("short", "int", "long") else \
                rng.uniform(0, 1, n).astype(NP[c.datatype])
        mask = None
        if c.name.startswith("e_") or c.name.endswith("_dist"):
            mask = rng.uniform(0, 1, n) < 0.1  # some nulls
        cols[c.name] = pa.array(v, mask=mask)
    return pa.table(cols)


def _sep(ra1, dec1, ra2, dec2):
    r1, d1, r2, d2 = map(np.radians, (ra1, dec1, ra2, dec2))
    a = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(a, 0, 1))))


def skymapper_app() -> Flask:
    app = Flask("skymapper-emulator")
    data = {name: synthetic(name) for name in BUNDLED}
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
        d = _sep(t["raj2000"].to_numpy(), t["dej2000"].to_numpy(), ra, dec)
        idx = np.nonzero(d <= sr)[0]
        idx = idx[np.argsort(d[idx], kind="stable")]
        meta = BUNDLED[cat]("x")
        verb = int(a.get("VERB", 2))
        if verb <= 1:
            names = ["object_id", "raj2000", "dej2000"]
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

    return app
