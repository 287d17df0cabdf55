"""Kind ``ivoa`` against the CADC emulation (real CADC capabilities, ObsCore metadata and rows,
login, docs/upstreams.md §4): metadata equal to CADC's, pyvo through the gateway, and per-user
cookie login that never crosses users (issue 6, generic IVOA upstream items 1 and 3)."""

from base64 import b64encode

import pytest
import requests
from emulators.cadc import cadc_app

from gateway.testing import make_app, parse_votable, serve


def basic(user, pw):
    return {"Authorization": "Basic " + b64encode(f"{user}:{pw}".encode()).decode()}


@pytest.fixture(scope="module")
def cadc():
    emu = cadc_app(users={"alice": "a-pw", "bob": "b-pw"})
    with serve(emu) as base:
        yield emu, base


def cadc_config(base, tmp, **extra):
    return {
        "archives": {
            "cadc": {
                "kind": "ivoa",
                "tap_url": base + "/argus",
                "schemas": {"ivoa": "cadc"},
                "auth": {"login_url": base + "/ac/login"},
                "datalink_url": base + "/caom2ops/datalink",
                "soda_url": base + "/caom2ops/sync",
                "id_prefixes": ["ivo://cadc.nrc.ca/"],
                **extra,
            }
        },
        "jobs": {"store": f"sqlite:///{tmp}/j.sqlite", "results_dir": str(tmp / "r")},
    }


@pytest.fixture(scope="module")
def gw(cadc, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cadc")
    app = make_app(cadc_config(cadc[1], tmp), load_entrypoints=True)
    with serve(app) as url:
        yield app, url
    app.extensions["vo_gateway"].jobs.close()


def test_obscore_metadata_and_rows_as_cadc_declares_them(gw, cadc):
    import pyvo
    from astropy.io.votable import parse

    _, url = gw
    tap = pyvo.dal.TAPService(url + "/tap")
    t = tap.run_sync(
        "SELECT TOP 5 obs_id, s_ra, s_dec, t_min, instrument_name, calib_level FROM cadc.ObsCore"
    ).to_table()
    real = parse("tests/fixtures/cadc/sia2_obscore_query_result.xml").get_first_table()
    row = real.to_table()[0]
    assert len(t) == 1 and t["obs_id"][0] == row["obs_id"] and t["s_ra"][0] == row["s_ra"]
    fields = {f.name: f for f in real.fields}
    import io

    raw = requests.get(
        url + "/tap/sync",
        params={"LANG": "ADQL", "QUERY": "SELECT s_ra, t_min, calib_level, instrument_name FROM cadc.ObsCore"},
    ).content
    for f in parse(io.BytesIO(raw)).get_first_table().fields:  # FIELDs equal CADC's declared metadata
        assert (f.ucd, f.utype, f.datatype, str(f.unit)) == (
            fields[f.name].ucd,
            fields[f.name].utype,
            fields[f.name].datatype,
            str(fields[f.name].unit),
        )
    cols = tap.run_sync(
        "SELECT column_name, datatype, ucd, utype FROM TAP_SCHEMA.columns WHERE table_name = 'cadc.ObsCore'"
    ).to_table()
    assert len(cols) == len(real.fields)
    by = {r["column_name"]: r for r in cols}
    assert by["obs_publisher_did"]["ucd"] == "meta.ref.url;meta.curation"
    assert by["s_ra"]["utype"] == fields["s_ra"].utype


def test_each_user_logs_in_with_own_credentials(gw, cadc):
    emu, _ = cadc
    _, url = gw
    q = {"LANG": "ADQL", "QUERY": "SELECT TOP 1 obs_id FROM cadc.ObsCore"}
    emu.requests.clear()
    for who in (basic("alice", "a-pw"), basic("bob", "b-pw"), {}, basic("alice", "a-pw")):
        r = requests.get(url + "/tap/sync", params=q, headers=who)
        assert r.status_code == 200 and parse_votable(r.content)[1] == "OK"
    syncs = [cookies.get("CADC_SSO") for path, cookies, _ in emu.requests if path == "/argus/sync"]
    logins = [path for path, _, _ in emu.requests if path == "/ac/login"]
    owners = {t: u for t, u in emu.tokens.items()}
    assert len(logins) == 2  # alice's token is reused for her second query
    assert [owners.get(s) for s in syncs] == ["alice", "bob", None, "alice"]
    assert all(auth is None for _, _, auth in emu.requests)  # Basic credentials never forwarded as such
    r = requests.get(url + "/tap/sync", params=q, headers=basic("alice", "wrong"))
    assert r.status_code == 401 and b"account or password" in r.content and b"wrong" not in r.content
    assert parse_votable(r.content)[1] == "ERROR"


DID = "ivo://cadc.nrc.ca/CFHT?282502/282502o"


def test_datalink_and_soda_through_the_gateway(gw, cadc):
    emu, base = cadc
    _, url = gw
    from pyvo.dal.adhoc import DatalinkResults

    dl = DatalinkResults.from_result_url(f"{url}/datalink/links?ID={requests.utils.quote(DID)}")
    assert {r.semantics for r in dl} >= {"#this", "#cutout", "#preview"}
    this = next(r for r in dl if r.semantics == "#this")
    assert this.access_url.startswith(base + "/data/pub/CFHT/282502o.fits.gz")  # data links stay direct
    sync = dl.get_adhocservice_by_ivoid("ivo://ivoa.net/std/SODA#sync-1.0")

    def param(res, name):
        return next(p.value for p in res.params if p.name == name)

    access = param(sync, "accessURL")
    assert access == f"{url}/soda/cadc/sync"
    async_ = dl.get_adhocservice_by_ivoid("ivo://ivoa.net/std/SODA#async-1.0")
    assert param(async_, "accessURL") == base + "/caom2ops/async"
    soda_id = next(p.value for p in sync.groups[0].entries if p.name == "ID")
    emu.requests.clear()
    r = requests.get(access, params={"ID": soda_id, "POS": "CIRCLE 210.3 54.4 0.01"}, headers=basic("bob", "b-pw"))
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/fits"
    assert r.content == open("tests/fixtures/cadc/soda_cutout_CFHT_MegaCam.fits", "rb").read()
    cookie = next(c for path, c, _ in emu.requests if path == "/caom2ops/sync")["CADC_SSO"]
    assert emu.tokens[cookie] == "bob"
    r = requests.get(access, params={"POS": "CIRCLE 210.3 54.4 0.01"})
    assert r.status_code == 400 and r.text.startswith("UsageError")
    r = requests.get(f"{url}/datalink/links", params=[("ID", DID), ("ID", "ivo://example.org/x")])
    assert parse_votable(r.content)[1] == "ERROR" and b"different archives" in r.content


def test_datalink_direct_mode_keeps_upstream_descriptors(cadc, tmp_path):
    _, base = cadc
    app = make_app(cadc_config(base, tmp_path, datalink_access="direct"), load_entrypoints=True)
    try:
        r = app.test_client().get("/datalink/links", query_string={"ID": DID})
        assert r.status_code == 200 and f'value="{base}/caom2ops/sync"'.encode() in r.data
        assert b"/soda/cadc/sync" not in r.data
    finally:
        app.extensions["vo_gateway"].jobs.close()


def test_sia2_forwarded_and_mapped_to_obscore(cadc, tmp_path):
    import pyvo

    emu, base = cadc
    app = make_app(cadc_config(base, tmp_path, sia2_url=base + "/sia2/query"), load_entrypoints=True)
    try:
        with serve(app) as url:
            res = pyvo.dal.SIA2Service(url + "/sia/query", check_baseurl=False).search(
                pos=(210.3, 54.4, 0.2), band=(4e-7, 7e-7), collection="TEST", maxrec=5
            )
            t = res.to_table()
        assert list(t["obs_publisher_did"]) == ["ivo://cadc.nrc.ca/TEST?C190508_1442_SCI/C190508_1442_SCI"]
        assert t["obs_collection"][0] == "TEST" and t["access_url"][0].startswith("https://example.com/datalink")
        assert dict(emu.sia2_params)["POS"] == "CIRCLE 210.3 54.4 0.2" and dict(emu.sia2_params)["COLLECTION"] == "TEST"
        assert dict(emu.sia2_params)["BAND"] == "4e-07 7e-07"
    finally:
        app.extensions["vo_gateway"].jobs.close()


@pytest.fixture
def tls_cadc(tmp_path):
    """The CADC emulation over HTTPS requiring a client certificate (tls-with-certificate)."""
    import ssl
    import subprocess
    import threading

    from werkzeug.serving import make_server

    from gateway.testing import free_port

    def run(*args):
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
    )
    (tmp_path / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for who in ("server", "client"):
        run(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj", f"/CN={who}"
        )
        run(
            "x509",
            "-req",
            "-in",
            f"{who}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{who}.pem",
            "-days",
            "2",
            *(["-extfile", "san.cnf"] if who == "server" else []),
        )
    (tmp_path / "client-bundle.pem").write_text(
        (tmp_path / "client.pem").read_text() + (tmp_path / "client.key").read_text()
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    ctx.load_verify_locations(tmp_path / "ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    srv = make_server("127.0.0.1", free_port(), cadc_app(), threaded=True, ssl_context=ctx)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{srv.server_port}", tmp_path
    srv.shutdown()


def test_client_certificate_service_account(tls_cadc, monkeypatch):
    base, d = tls_cadc
    monkeypatch.setenv("CADC_CERT", str(d / "client-bundle.pem"))
    cfg = {
        "archives": {
            "cadc": {
                "kind": "ivoa",
                "tap_url": base + "/argus",
                "schemas": {"ivoa": "cadc"},
                "ca_bundle": str(d / "ca.pem"),
                "client_cert": {"env": "CADC_CERT"},
            }
        },
        "jobs": {"store": f"sqlite:///{d}/j.sqlite", "results_dir": str(d / "r")},
    }
    app = make_app(cfg, load_entrypoints=True)
    try:
        r = app.test_client().get(
            "/tap/sync", query_string={"LANG": "ADQL", "QUERY": "SELECT obs_id FROM cadc.ObsCore"}
        )
        assert r.status_code == 200 and parse_votable(r.data)[1] == "OK"
    finally:
        app.extensions["vo_gateway"].jobs.close()
    del cfg["archives"]["cadc"]["client_cert"]
    from gateway.config import ConfigError

    with pytest.raises(ConfigError, match="unreachable"):  # without the certificate the TLS handshake fails
        make_app(cfg, load_entrypoints=True)
