"""``vo-gateway new-archive NAME``: a new archive plugin, installable and tested, for a survey
behind a REST cone API (``docs/writing_an_archive.md``).

The generated distribution is complete: a config model, one table with units and UCDs, a
:meth:`~gateway.archive.Archive.scan` that sends the cone, the equality conditions and the
column list to ``{base_url}/cone`` and reads its CSV, a local emulator of that API, and tests
in which pyvo runs TAP queries (a cone, a crossmatch with an uploaded table) and SCS through a
gateway, against ground truth computed with numpy.  Edit the table, the request and the
emulator to match the real service.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

FILES = {
    "pyproject.toml": """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "vo-gateway-$dist"
version = "0.1.0"
description = "vo-gateway archive kind '$name'"
requires-python = ">=3.11"
dependencies = ["vo-gateway", "requests>=2.32", "pyarrow>=16"]

[project.optional-dependencies]
test = ["pytest>=8", "pyvo>=1.6", "flask>=3"]

[project.entry-points.vo_gateway]
$name = "vo_gateway_$name.plugin"

[tool.setuptools]
packages = ["vo_gateway_$name"]
""",
    "README.md": """\
# vo-gateway plugin: kind `$name`

Serves a survey behind a REST cone API through vo-gateway's TAP (ADQL with joins, uploads and
everything else the gateway evaluates itself) and SCS.

```bash
pip install -e ".[test]"
python -m pytest -q tests
```

In `config.yaml`:

```yaml
archives:
  $name:
    kind: $name
    base_url: https://survey.example.org/api   # {base_url}/cone?ra=&dec=&radius=&columns=
```

What to change for a real service: the table in `vo_gateway_$name/archive.py` (`TABLE`), the
request in `scan()`, and `tests/emulator.py`, which must answer as the real service does.
""",
    "vo_gateway_$name/__init__.py": '"""vo-gateway archive kind ``$name``."""\n',
    "vo_gateway_$name/plugin.py": """\
\"\"\"Entry point of the ``$name`` kind (entry-point group ``vo_gateway``).\"\"\"

from gateway.hookspecs import hookimpl

from .archive import ${cls}Archive


@hookimpl
def gateway_register_archives():
    return [${cls}Archive]
""",
    "vo_gateway_$name/archive.py": """\
\"\"\"Kind ``$name``: a survey behind a REST cone API.

``GET {base_url}/cone?ra=..&dec=..&radius=..&columns=a,b[&col=value...]`` answers CSV with a
header line: the rows within ``radius`` degrees of (ra, dec), ICRS.  The gateway gives
:meth:`${cls}Archive.scan` one cone per request (capabilities below); everything else in a query
(other conditions, joins, uploads, ORDER BY, TOP) it evaluates itself, exactly.
\"\"\"

from __future__ import annotations

import io

import pyarrow.csv as pcsv
from pydantic import AnyHttpUrl, Field

from gateway.archive import Archive, ArchiveConfig, Capabilities, ScanRequest
from gateway.faults import UsageFault
from gateway.rowstream import RowStream
from gateway.schema import ARROW_TYPES, Column, Table
from gateway.upstream import UpstreamSession, origin, read_body, upstream_get

TABLE = Table(
    "$name",
    "sources",
    [
        Column("source_id", "long", ucd="meta.id;meta.main", description="source identifier", principal=True),
        Column("ra", "double", unit="deg", ucd="pos.eq.ra;meta.main", description="right ascension (ICRS)",
               principal=True),
        Column("dec", "double", unit="deg", ucd="pos.eq.dec;meta.main", description="declination (ICRS)",
               principal=True),
        Column("mag", "float", unit="mag", ucd="phot.mag;em.opt.V", description="V magnitude (AB)", principal=True),
    ],
    description="The survey's source catalogue",
    ra_column="ra",
    dec_column="dec",
    id_column="source_id",
)


class ${cls}Config(ArchiveConfig):
    base_url: AnyHttpUrl = Field(description="the REST API root: {base_url}/cone answers cone searches")
    max_radius: float = Field(1.0, gt=0, description="largest cone the API takes, deg")
    timeout: float = Field(60.0, gt=0, description="seconds one read of an answer may wait")


class ${cls}Archive(Archive):
    kind = "$name"
    Config = ${cls}Config
    capabilities = Capabilities(cone=True, comparisons=True, column_selection=True, bounded=True)

    def __init__(self, name, config: ${cls}Config, *, base_dir):
        super().__init__(name, config, base_dir=base_dir)
        self.config: ${cls}Config = config
        self.base = str(config.base_url).rstrip("/")
        self.session = UpstreamSession({origin(self.base)}, config.timeout)

    def tables(self) -> list[Table]:
        return [TABLE]

    def scan(self, request: ScanRequest, context=None) -> RowStream:
        \"\"\"One API call for a cone: the cone, the columns and the ``=`` conditions (the others
        are checked by the gateway on the rows).  Refuses what the API cannot do.\"\"\"
        cone = request.cone
        if cone is None:
            raise UsageFault(f"{TABLE.qualified_name} needs a position: add WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
                             "CIRCLE('ICRS', ra0, dec0, radius)) or a crossmatch with a table that has one")
        if cone.radius > self.config.max_radius:
            raise UsageFault(f"the $name API searches cones of at most {self.config.max_radius} deg")
        params = {"ra": cone.ra, "dec": cone.dec, "radius": cone.radius, "columns": ",".join(request.columns)}
        params.update({p.column: p.value for p in request.predicates if p.op == "="})
        what = f"the $name API ({self.base})"
        r = upstream_get(self.session, what, self.base + "/cone", params, self.config.timeout, refused="the query")
        body = read_body(r, what, "csv")
        cols = [TABLE.column(n) for n in request.columns]
        types = {c.name: ARROW_TYPES[c.datatype] for c in cols if c is not None}
        rows = pcsv.read_csv(io.BytesIO(body), convert_options=pcsv.ConvertOptions(column_types=types))
        return RowStream([c for c in cols if c is not None], rows.to_batches())
""",
    "tests/emulator.py": """\
\"\"\"A local emulator of the $name REST API (the same requests, the same answers), over a
reproducible synthetic catalogue: 2,000 sources in a 1-degree disc around (150, 2).\"\"\"

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
from flask import Flask, Response, request

CENTRE = (150.0, 2.0)


def catalogue() -> pa.Table:
    rng = np.random.default_rng(1)
    n = 2000
    r = np.degrees(np.arccos(1 - rng.uniform(0, 1, n) * (1 - np.cos(np.radians(1.0)))))
    theta = rng.uniform(0, 2 * np.pi, n)
    dec = CENTRE[1] + r * np.sin(theta)
    ra = CENTRE[0] + r * np.cos(theta) / np.cos(np.radians(dec))
    return pa.table({"source_id": np.arange(1, n + 1), "ra": ra, "dec": dec,
                     "mag": rng.uniform(14, 22, n).astype(np.float32)})


def separation(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.minimum(1, np.sqrt(h))))


def emulator_app() -> Flask:
    app = Flask("$name-emulator")
    data = catalogue()
    app.data = data  # type: ignore[attr-defined]

    @app.route("/api/cone")
    def cone():
        try:
            ra, dec, radius = (float(request.args[k]) for k in ("ra", "dec", "radius"))
        except (KeyError, ValueError):
            return Response("ra, dec and radius are required numbers", 400)
        keep = separation(np.asarray(data["ra"]), np.asarray(data["dec"]), ra, dec) <= radius
        for name in data.column_names:
            if name in request.args and name not in ("ra", "dec", "radius", "columns"):
                keep &= np.asarray(data[name]).astype(str) == request.args[name]
        cols = request.args.get("columns", ",".join(data.column_names)).split(",")
        buf = io.BytesIO()
        pcsv.write_csv(data.filter(pa.array(keep)).select(cols), buf)
        return Response(buf.getvalue(), mimetype="text/csv")

    return app
""",
    "tests/test_$name.py": """\
\"\"\"The $name kind through a gateway, with pyvo, against the emulator's own rows.\"\"\"

import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from emulator import CENTRE, emulator_app, separation  # noqa: E402

from gateway.testing import make_app, serve  # noqa: E402


@pytest.fixture(scope="module")
def tap_url(tmp_path_factory):
    import vo_gateway_$name.plugin as plugin

    emu = emulator_app()
    with serve(emu) as api:
        tmp = tmp_path_factory.mktemp("gw")
        app = make_app({"archives": {"$name": {"kind": "$name", "base_url": api + "/api"}},
                        "jobs": {"store": f"sqlite:///{tmp}/jobs.sqlite", "results_dir": str(tmp / "results")}},
                       plugins=[plugin])
        with serve(app) as url:
            yield url, emu.data
        app.extensions["vo_gateway"].jobs.close()


def truth(data, ra, dec, radius):
    sep = separation(np.asarray(data["ra"]), np.asarray(data["dec"]), ra, dec)
    return set(np.asarray(data["source_id"])[sep <= radius].tolist())


def test_tap_cone_with_a_condition_the_gateway_evaluates(tap_url):
    import pyvo

    url, data = tap_url
    t = pyvo.dal.TAPService(url + "/tap").run_sync(
        f"SELECT source_id, mag FROM $name.sources WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
        f"CIRCLE('ICRS', {CENTRE[0]}, {CENTRE[1]}, 0.2)) AND mag < 18 ORDER BY mag").to_table()
    mags = dict(zip(np.asarray(data["source_id"]).tolist(), np.asarray(data["mag"]).tolist()))
    want = {i for i in truth(data, CENTRE[0], CENTRE[1], 0.2) if mags[i] < 18}
    assert set(t["source_id"].tolist()) == want and len(want) > 0
    assert list(t["mag"]) == sorted(t["mag"])


def test_upload_crossmatch(tap_url):
    import pyvo

    url, data = tap_url
    pick = np.arange(0, 2000, 200)
    targets = Table({"tid": np.arange(len(pick)), "ra": np.asarray(data["ra"])[pick],
                     "dec": np.asarray(data["dec"])[pick]})
    t = pyvo.dal.TAPService(url + "/tap").run_sync(
        "SELECT u.tid, s.source_id FROM TAP_UPLOAD.t AS u JOIN $name.sources AS s "
        "ON 1 = CONTAINS(POINT('ICRS', s.ra, s.dec), CIRCLE('ICRS', u.ra, u.dec, 1.0/3600))",
        uploads={"t": targets}).to_table()
    want = set()
    for tid, ra, dec in zip(targets["tid"], targets["ra"], targets["dec"]):
        want |= {(int(tid), i) for i in truth(data, ra, dec, 1 / 3600)}
    assert {(int(a), int(b)) for a, b in zip(t["tid"], t["source_id"])} == want and len(want) >= len(pick)


def test_scs(tap_url):
    import pyvo

    url, data = tap_url
    res = pyvo.dal.SCSService(url + "/scs/$name.sources").search(pos=CENTRE, radius=0.1)
    ids = {int(x) for x in res.to_table()["source_id"]}
    assert ids == truth(data, CENTRE[0], CENTRE[1], 0.1) and len(ids) > 0
""",
}


def new_archive(name: str, directory: Path) -> list[Path]:
    """Write the plugin distribution for kind ``name`` into ``directory`` (which must not exist
    or be empty).  Returns the files written.  Raises ValueError for a name that is not a
    lower-case Python identifier, or a directory that holds files."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"{name!r}: the kind must be a lower-case identifier (letters, digits, _)")
    if directory.exists() and any(directory.iterdir()):
        raise ValueError(f"{directory} is not empty")
    values = {"name": name, "dist": name.replace("_", "-"), "cls": "".join(p.title() for p in name.split("_"))}
    written = []
    for rel, text in FILES.items():
        path = directory / Template(rel).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(values))
        written.append(path)
    return written
