"""A REST catalogue API over the demo tables, and the scanning archive kind ``restcat`` that
reads it, for running ADQL through the federated planner over a non-SQL upstream (issue 19).

``GET /rows/{table}?columns=a,b[&ra=&dec=&radius=]`` answers CSV with a header line: the
table's rows (all of them, or those within ``radius`` degrees of ``ra``/``dec``), only the
columns asked for.  The archive declares ``cone`` and ``column_selection`` only, so every other
part of a query (conditions, joins, grouping, functions, geometry, set operations) is the
gateway's own evaluation (:mod:`gateway.planner`) over the rows the API returns.  Its tables
carry the demo archive's metadata under the schema ``rest``.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from flask import Flask, Response, request
from pydantic import AnyHttpUrl

from gateway.archive import Archive, ArchiveConfig, Capabilities, ScanRequest
from gateway.hookspecs import hookimpl
from gateway.rowstream import RowStream
from gateway.schema import ARROW_TYPES, Table
from gateway.sky import separation
from gateway.upstream import UpstreamSession, origin, read_body, upstream_get

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"
TABLES = ("sdss_stars", "s82_rrlyrae", "s82_rrlyrae_epochs")


def restcat_app() -> Flask:
    app = Flask("restcat-emulator")
    data = {t: pq.read_table(DEMO / f"{t}.parquet") for t in TABLES}
    app.requests = []  # type: ignore[attr-defined]

    @app.route("/rows/<table>")
    def rows(table):
        if table not in data:
            return Response(f"no table {table}", 404)
        app.requests.append((table, dict(request.args)))  # type: ignore[attr-defined]
        t = data[table]
        if "ra" in request.args:
            ra, dec, radius = (float(request.args[k]) for k in ("ra", "dec", "radius"))
            inside = separation(np.asarray(t["ra"]), np.asarray(t["dec"]), ra, dec) <= radius
            t = t.filter(pa.array(inside))
        t = t.select(request.args["columns"].split(","))
        out = io.BytesIO()
        pcsv.write_csv(t, out)
        return Response(out.getvalue(), mimetype="text/csv")

    return app


class RestCatConfig(ArchiveConfig):
    base_url: AnyHttpUrl


class RestCatArchive(Archive):
    kind = "restcat"
    Config = RestCatConfig
    capabilities = Capabilities(cone=True, column_selection=True)

    def __init__(self, name, config: RestCatConfig, *, base_dir):
        super().__init__(name, config, base_dir=base_dir)
        self.base = str(config.base_url).rstrip("/")
        self.session = UpstreamSession({origin(self.base)}, 30.0)
        self._tables = [dataclasses.replace(t, schema="rest", foreign_keys=[]) for t in demo_tables()]

    def tables(self) -> list[Table]:
        return self._tables

    def scan(self, request: ScanRequest, context=None) -> RowStream:
        params: dict = {"columns": ",".join(request.columns)}
        if request.cone is not None:
            params.update(ra=request.cone.ra, dec=request.cone.dec, radius=request.cone.radius)
        what = f"the demo REST API ({self.base})"
        r = upstream_get(self.session, what, f"{self.base}/rows/{request.table.name}", params, 30.0)
        body = read_body(r, what, "csv")
        cols = [request.table.column(n) for n in request.columns]
        types = {c.name: ARROW_TYPES[c.datatype] for c in cols if c is not None}
        rows = pcsv.read_csv(io.BytesIO(body), convert_options=pcsv.ConvertOptions(column_types=types))
        return RowStream([c for c in cols if c is not None], rows.to_batches())


def demo_tables() -> list[Table]:
    """The demo archive's declared tables (metadata from ``data/demo/*.yaml``), read by the
    embedded archive of ``config.yaml``."""
    import yaml
    from vo_gateway_embedded.archive import EmbeddedArchive

    spec = yaml.safe_load((DEMO.parents[1] / "config.yaml").read_text())["archives"]["demo"]
    spec = {**spec, "tables": [t for t in spec["tables"] if t["name"] in TABLES], "images": []}
    arch = EmbeddedArchive("demo", EmbeddedArchive.Config.model_validate(spec), base_dir=DEMO.parents[1])
    try:
        return arch.tables()
    finally:
        arch.close()


class RestCatPlugin:
    @hookimpl
    def gateway_register_archives(self):
        return [RestCatArchive]
