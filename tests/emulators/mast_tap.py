"""MAST's VO TAP service for Pan-STARRS DR2 on loopback (docs/upstreams.md §2.5): a real TAP 1.1
service (a vo-gateway on DuckDB) with MAST's observed behaviour: schema ``dbo``, ADQL, sync and
UWS async, VOTable and ``text/csv`` answers (the only formats its capabilities list), MAXREC default = maximum = 100,000 rows (the hard
limit: a longer answer stops there, and says so only in a VOTable).

Tables (columns and types of the bundled snapshot, ``configs/mast_vo_tap/ps1dr2.json``):

* Column names are in lower case (the embedded kind's rule); ADQL names are case-insensitive.
* ``ObjectThin``: one row per object; ``ForcedWarpMeasurement``: per-epoch forced photometry;
  ``Filter``: filterID -> filterType (g=1, r=2, i=3, z=4, y=5, as PS1).
* Object :data:`RR_LYRAE` is a real RR Lyrae: its ForcedWarpMeasurement rows are the Stripe 82
  light curve of star ``s82_rrlyrae`` id :data:`S82_ID` (``data/demo``), ugriz AB magnitudes as
  fluxes in Jy (3631 x 10^(-0.4 m)); objects 1 .. :data:`FILLER` each have one g-band row, so
  a query over all of them passes the 100,000-row limit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gateway.schema import ARROW_TYPES
from gateway.testing import make_app

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "configs/mast_vo_tap/ps1dr2.json"
LIMIT = 100_000
S82_ID = 4099
RR_LYRAE = 190590227425318470
FILLER = 120_000
FILTERS = {"g": 1, "r": 2, "i": 3, "z": 4, "y": 5}


def light_curve() -> pa.Table:
    """The Stripe 82 epochs of star :data:`S82_ID` in grizy-bands PS1 has (g, r, i, z)."""
    t = pq.read_table(ROOT / "data/demo/s82_rrlyrae_epochs.parquet").to_pandas()
    t = t[(t["id"] == S82_ID) & t["band"].isin(list(FILTERS))].sort_values("mjd")
    return pa.Table.from_pandas(t, preserve_index=False)


def _table(meta: dict, values: dict, n: int) -> pa.Table:
    cols = {}
    for c in meta["columns"]:
        typ = pa.string() if c["datatype"] == "char" else ARROW_TYPES[c["datatype"]]
        cols[c["name"].lower()] = (
            pa.array(values[c["name"]], type=typ) if c["name"] in values else pa.nulls(n, type=typ)
        )
    return pa.table(cols)


def mast_tap_app(tmp: Path):
    """The emulator app (serve it with :func:`gateway.testing.serve`; its TAP is at ``/tap``)."""
    snap = {t["name"]: t for t in json.loads(SNAPSHOT.read_text())}
    lc = light_curve()
    mags = lc.column("mag").to_numpy().astype(float)
    errs = lc.column("mag_err").to_numpy().astype(float)
    flux = 3631.0 * 10 ** (-0.4 * mags)
    n_lc = lc.num_rows
    ids = np.concatenate([np.full(n_lc, RR_LYRAE), np.arange(1, FILLER + 1)])
    fwm = _table(
        snap["ForcedWarpMeasurement"],
        {
            "objID": ids,
            "forcedWarpID": np.arange(len(ids)),
            "obsTime": np.concatenate([lc.column("mjd").to_numpy(), 55000.0 + np.arange(FILLER) % 1000]),
            "filterID": np.concatenate([[FILTERS[b] for b in lc.column("band").to_pylist()], np.ones(FILLER, int)]),
            "FpsfFlux": np.concatenate([flux, np.full(FILLER, 1e-5)]).astype(np.float32),
            "FpsfFluxErr": np.concatenate([flux * errs / 1.0857, np.full(FILLER, 1e-7)]).astype(np.float32),
        },
        len(ids),
    )
    s82 = pq.read_table(ROOT / "data/demo/s82_rrlyrae.parquet").to_pandas().set_index("id").loc[S82_ID]
    obj = _table(
        snap["ObjectThin"],
        {"objID": [RR_LYRAE], "raMean": [float(s82["ra"])], "decMean": [float(s82["dec"])], "nDetections": [n_lc]},
        1,
    )
    filt = _table(snap["Filter"], {"filterID": list(FILTERS.values()), "filterType": list(FILTERS)}, len(FILTERS))
    specs = []
    for name, table in (("ForcedWarpMeasurement", fwm), ("ObjectThin", obj), ("Filter", filt)):
        path = tmp / f"{name}.parquet"
        pq.write_table(table, path)
        meta = snap[name]
        columns = [
            {k: c[k] for k in ("name", "datatype", "arraysize", "unit", "ucd", "description") if c.get(k) is not None}
            for c in meta["columns"]
        ]
        spec = {"name": name, "source": str(path), "description": meta["description"], "columns": columns}
        if meta["ra_column"]:  # the embedded kind keeps column names in lower case
            spec.update(ra_column=meta["ra_column"].lower(), dec_column=meta["dec_column"].lower())
        if meta["id_column"]:
            spec["id_column"] = meta["id_column"].lower()
        specs.append(spec)
    cfg = {
        "service": {"title": "MAST VO TAP emulation (ps1dr2)", "maxrec_default": LIMIT, "maxrec_hard": LIMIT},
        "archives": {"ps1dr2": {"kind": "embedded", "adql_schema": "dbo", "tables": specs}},
        "jobs": {"store": f"sqlite:///{tmp}/jobs.sqlite", "results_dir": str(tmp / "results"), "heartbeat": 0.2},
        "limits": {"enabled": False},
    }
    app = make_app(cfg, load_entrypoints=True)
    app.config["lc"] = lc
    app.config["requests"] = requests = []

    @app.before_request
    def record():
        from flask import request

        if request.path.endswith(("/sync", "/async")) and request.method == "POST":
            requests.append(dict(request.values))

    @app.after_request
    def mast_formats(response):  # MAST lists VOTable and CSV only (describe() of both services)
        from flask import request

        if request.path.endswith("/capabilities"):
            import re

            body = response.get_data(as_text=True)
            mast = (
                "<outputFormat><mime>application/x-votable+xml</mime><alias>votable</alias></outputFormat>"
                "<outputFormat><mime>text/csv;header=present</mime><alias>csv</alias></outputFormat>"
            )
            body = re.sub(r"<outputFormat.*?</outputFormat>\s*", "", body, flags=re.S)
            body = body.replace("<language>", mast + "<language>", 1)
            response.set_data(body)
        return response

    return app
