"""Security and integrity under attack (issue 22): the SSRF matrix (every way of spelling a
forbidden address, as a TAP_UPLOAD URL, through DNS, and as an upstream's redirect for every
plugin's session and for SODA/DataLink proxying; each asserts zero connections to a canary
standing in for the forbidden address), and truncated upstream answers for every plugin kind
and output format (never passed on as complete, never cached), and the total deadline."""

import socket
import time

import pytest
from conftest import demo_config
from flask import Flask, Response, request
from netfaults import Canary, CuttingProxy

from gateway.testing import make_app, parse_votable, serve


@pytest.fixture(scope="module")
def canary():
    c = Canary()
    yield c
    c.close()


def forbidden_forms(port: int, allowed: str = "8.8.8.8") -> list[str]:
    """The spellings of the canary's address (loopback) an attacker tries."""
    return [
        f"http://127.0.0.1:{port}\\@{allowed}/latest/meta-data/",
        f"http://127.0.0.1:{port}/",
        f"http://2130706433:{port}/",
        f"http://0x7f000001:{port}/",
        f"http://0177.0.0.1:{port}/",
        f"http://127.1:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://0.0.0.0:{port}/",
        f"http://[::]:{port}/",
        f"http://[::1]:{port}/",
        f"http://localhost:{port}/",
        f"http://u:p@127.0.0.1:{port}/",
        f"http://%31%32%37.0.0.1:{port}/",
        f"http://127.0.0.1:{port}#@{allowed}/",
        f"http://127.0.0.1:{port}\t/",
    ]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    app = make_app(
        demo_config(tmp_path_factory.mktemp("sec"), uploads={"allow_private_hosts": False}), load_entrypoints=True
    )
    yield app
    app.extensions["vo_gateway"].jobs.close()


def test_upload_urls_never_reach_forbidden_addresses(gw, canary):
    c = gw.test_client()
    before = canary.count
    for url in forbidden_forms(canary.port):
        r = c.get(
            "/tap/sync", query_string={"LANG": "ADQL", "QUERY": "SELECT * FROM TAP_UPLOAD.t", "UPLOAD": f"t,{url}"}
        )
        assert r.status_code == 400, (url, r.data)
        assert parse_votable(r.data)[1] == "ERROR"
        assert b"canary" not in r.data
    assert canary.count == before, "a forbidden address was connected to"


def test_dns_rebinding_and_redirects_of_uploads_are_checked_at_connect(gw, canary, monkeypatch):
    """A name the resolver maps to loopback is refused where the connection is made (one
    lookup, the checked address used); a redirect from an allowed server to any forbidden
    spelling is refused the same way."""
    import gateway.upstream as up

    real_getaddrinfo = socket.getaddrinfo
    redirector = Flask("redirector")
    redirector.add_url_rule("/r", "r", lambda: ("", 302, {"Location": request.args["to"]}))
    with serve(redirector) as base:
        rport = int(base.rsplit(":", 1)[1])

        def fake(host, port, *a, **k):  # public.test "resolves" to the redirector; rebind.test to the canary
            if host == "public.test":
                return real_getaddrinfo("127.0.0.1", port, *a, **k)
            if host == "rebind.test":
                return real_getaddrinfo("127.0.0.1", port, *a, **k)
            return real_getaddrinfo(host, port, *a, **k)

        real_check = up.AddressPolicy.check_ip

        def check_ip(self, host, ip):
            if host == "public.test":  # stands in for a public server
                return
            return real_check(self, host, ip)

        monkeypatch.setattr(up.socket, "getaddrinfo", fake)
        monkeypatch.setattr(up.AddressPolicy, "check_ip", check_ip)
        c = gw.test_client()
        before = canary.count
        r = c.get(
            "/tap/sync",
            query_string={
                "LANG": "ADQL",
                "QUERY": "SELECT * FROM TAP_UPLOAD.t",
                "UPLOAD": f"t,http://rebind.test:{canary.port}/t.vot",
            },
        )
        assert r.status_code == 400 and b"non-public address" in r.data
        for url in forbidden_forms(canary.port):
            r = c.get(
                "/tap/sync",
                query_string={
                    "LANG": "ADQL",
                    "QUERY": "SELECT * FROM TAP_UPLOAD.t",
                    "UPLOAD": f"t,http://public.test:{rport}/r?to={requests_quote(url)}",
                },
            )
            assert r.status_code == 400, (url, r.data)
        assert canary.count == before


def requests_quote(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")


@pytest.fixture(scope="module")
def redirector():
    """An allowed upstream whose every answer redirects to ``?to=`` (with 302, or 303 for POST)."""
    app = Flask("evil-upstream")

    @app.route("/<path:p>", methods=["GET", "POST"])
    def anything(p):
        to = request.values.get("to") or app.config["TO"]
        return Response("", 303 if request.method == "POST" else 302, {"Location": to})

    app.config["TO"] = "/"
    with serve(app) as base:
        yield app, base


def test_every_plugin_session_refuses_redirects_to_forbidden_addresses(redirector, canary, tmp_path):
    """The archives' own sessions (ivoa, skymapper, mast, hsc; TAP, cone, catalog-job, DAS) and
    the SODA and DataLink proxies follow no redirect to a forbidden spelling of an address."""
    from gateway.faults import TransientFault

    app_, base = redirector
    snap = tmp_path / "snap.json"
    import json

    from gateway.schema import Column, Table
    from gateway.tapclient import table_json

    snap.write_text(json.dumps([table_json(Table("up", "t", [Column("a", "int")]))]))
    cfg = {
        "archives": {
            "iv": {
                "kind": "ivoa",
                "tap_url": base + "/tap",
                "schemas": {"x": "up"},
                "snapshot": str(snap),
                "datalink_url": base + "/datalink",
                "soda_url": base + "/soda",
                "id_prefixes": ["ivo://x/"],
            },
            "sm": {"kind": "skymapper", "cone_url": base + "/sm-cone/public/query"},
            "hsc": {
                "kind": "hsc",
                "api_url": base + "/datasearch/api/catalog_jobs/",
                "release_version": "dr4",
                "schemas": {"s23b_wide": "hsc_s23b_wide"},
                "das_url": base + "/das",
                "psf_url": base + "/psf",
            },
            "mast": {"kind": "mast", "base_url": base + "/api/v0.1", "metadata_cache": None},
        },
        "jobs": {"store": f"sqlite:///{tmp_path}/j.sqlite", "results_dir": str(tmp_path / "r")},
    }
    app = make_app(cfg, load_entrypoints=True)
    gw = app.extensions["vo_gateway"]
    c = app.test_client()
    before = canary.count
    try:
        for url in forbidden_forms(canary.port, base.split("//")[1]) + ["http://169.254.169.254/latest/meta-data/"]:
            app_.config["TO"] = url
            for name in ("iv", "sm", "hsc", "mast"):
                with pytest.raises(TransientFault, match="another address|redirected"):
                    gw.catalogue.archives[name].session.get(base + "/anything")
            r = c.get("/tap/sync", query_string={"LANG": "ADQL", "QUERY": "SELECT a FROM up.t"})
            assert r.status_code == 503 and b"another address" in r.data, (url, r.data)
            r = c.get("/datalink/iv/links", query_string={"ID": "ivo://x/1"})
            assert r.status_code == 503, (url, r.data)
            r = c.get("/soda/iv/sync", query_string={"ID": "ivo://x/1", "CIRCLE": "10 10 0.01"})
            assert r.status_code == 503, (url, r.data)
        assert canary.count == before, "a forbidden address was connected to"
    finally:
        gw.jobs.close()


# -- truncated answers ---------------------------------------------------------------------------

FORMATS = {
    "votable": "application/x-votable+xml",
    "tabledata": "votable/td",
    "csv": "csv",
    "tsv": "tsv",
    "json": "application/json",
    "fits": "fits",
}


def assert_not_complete(r, fmt: str):
    """A cut answer is an error: an HTTP error before the first byte, or an in-band error."""
    if r.status_code != 200:
        assert r.status_code == 503, r.data[:500]
        assert parse_votable(r.data)[1] == "ERROR"
        assert b"broke off" in r.data or b"did not finish" in r.data
        return
    assert fmt != "fits", "a FITS answer from a cut upstream was sent as complete"
    if fmt in ("votable", "tabledata"):
        assert b'name="QUERY_STATUS" value="ERROR"' in r.data and b"</VOTABLE>" in r.data
    elif fmt in ("csv", "tsv"):
        assert b"QUERY_STATUS=ERROR" in r.data
    else:
        assert b'"query_status": "ERROR"' in r.data


@pytest.fixture(scope="module")
def ivoa_behind_proxy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cut")
    up = make_app(demo_config(tmp / "up"), load_entrypoints=True)
    with serve(up) as base:
        proxy = CuttingProxy(base)
        front = make_app(
            {
                "archives": {
                    "cadc": {
                        "kind": "ivoa",
                        "tap_url": proxy.url + "/tap",
                        "schemas": {"demo": "up"},
                        "snapshot": str(tmp / "s.json"),
                        "timeout": 1,
                        "deadline": 2,
                    }
                },
                "cache": {"ttl": 600, "dir": str(tmp / "cache")},
                "jobs": {"store": f"sqlite:///{tmp}/j.sqlite", "results_dir": str(tmp / "r")},
            },
            load_entrypoints=True,
        )
        proxy.match = "/sync"
        yield front, proxy
        front.extensions["vo_gateway"].jobs.close()
        proxy.close()
    up.extensions["vo_gateway"].jobs.close()


QUERIES = {
    "plain": "SELECT TOP 3000 source_id, ra, dec, phot_g_mean_mag FROM up.gaia_dr3_g10",
    "expression": "SELECT TOP 3000 source_id, ra + 0 AS r FROM up.gaia_dr3_g10",
}


@pytest.mark.parametrize("mode", ["close", "short", "chunked"])
def test_ivoa_truncation_detected_in_every_format(ivoa_behind_proxy, mode):
    front, proxy = ivoa_behind_proxy
    c = front.test_client()
    for qname, q in QUERIES.items():
        for fmt, value in FORMATS.items():
            front.extensions["vo_gateway"].cache.store.clear()  # the whole answer of an earlier format
            proxy.mode = mode
            n = proxy.cuts
            r = c.get("/tap/sync", query_string={"LANG": "ADQL", "QUERY": q, "RESPONSEFORMAT": value, "MAXREC": 100000})
            assert proxy.cuts == n + 1
            assert_not_complete(r, fmt)
            proxy.mode = None  # recovered: the cut answer was not cached, the whole one comes
            r = c.get("/tap/sync", query_string={"LANG": "ADQL", "QUERY": q, "RESPONSEFORMAT": value, "MAXREC": 100000})
            assert r.status_code == 200, (qname, fmt)
            if fmt in ("votable", "tabledata"):
                assert len(parse_votable(r.data)[0]) == 3000 and b"ERROR" not in r.data, (qname, fmt)


def test_trickling_upstream_is_cut_at_its_total_deadline(ivoa_behind_proxy):
    front, proxy = ivoa_behind_proxy
    c = front.test_client()
    proxy.mode = "trickle"
    try:
        t0 = time.monotonic()
        r = c.get("/tap/sync", query_string={"LANG": "ADQL", "QUERY": QUERIES["plain"], "RESPONSEFORMAT": "csv"})
        body = r.data
        took = time.monotonic() - t0
    finally:
        proxy.mode = None
    assert took < 2 + 1.5, took  # deadline 2 s; a read timeout of 1 s never fires at 0.1 s a byte
    assert b"did not finish" in body, body[:300]


REST_CASES = {
    "mast": (
        ".csv",
        lambda u: {"kind": "mast", "base_url": u + "/api/v0.1", "metadata_cache": None},
        "SELECT MatchID, MatchRA, MatchDec FROM mast_hsc3.summary_magaper2 WHERE "
        "1 = CONTAINS(POINT('ICRS', MatchRA, MatchDec), CIRCLE('ICRS', 16.2016962, 2.1194959, 0.1))",
    ),
    "skymapper": (
        "sm-cone",
        lambda u: {"kind": "skymapper", "cone_url": u + "/sm-cone/public/query"},
        "SELECT object_id, raj2000, dej2000 FROM skymapper_dr4.master WHERE "
        "1 = CONTAINS(POINT('ICRS', raj2000, dej2000), CIRCLE('ICRS', 33.64, -0.77, 0.2))",
    ),
    "sdss": (
        "x_results",
        lambda u: {"kind": "sdss", "skyserver_url": u},
        "SELECT objid, ra, dec, psfmag_r FROM sdss_dr17.PhotoObj WHERE "
        "1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 200.5, 36.85, 0.2))",
    ),
    "hsc": (
        "download",
        lambda u: {
            "kind": "hsc",
            "api_url": u + "/datasearch/api/catalog_jobs/",
            "release_version": "dr4",
            "schemas": {"s23b_wide": "hsc_s23b_wide"},
            "poll_initial": 0.01,
            "das_url": None,
            "psf_url": None,
        },
        "SELECT object_id, ra, dec FROM hsc_s23b_wide.forced WHERE "
        "1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 150.0, 2.0, 0.3))",
    ),
}


@pytest.mark.parametrize("kind", sorted(REST_CASES))
def test_rest_plugins_detect_truncation(kind, tmp_path, request):
    """MAST (catalogs API CSV pages), SkyMapper (sm-cone CSV), SkyServer (its SQL search CSV)
    and HSC-SSP (the job download), each behind a cutting proxy in front of its emulated upstream, in every mode and format."""
    if kind == "hsc":
        from emulators.hsc import hsc_app

        emu = hsc_app(request.getfixturevalue("postgres_url"), users={"alice": "a-pw"})
    elif kind == "mast":
        from emulators.mast import mast_app

        emu = mast_app()
    elif kind == "sdss":
        from emulators.sdss import sdss_app

        emu = sdss_app()
    else:
        from emulators.skymapper import skymapper_app

        emu = skymapper_app()
    match, cfg, q = REST_CASES[kind]
    auth = {"Authorization": "Basic YWxpY2U6YS1wdw=="}  # alice:a-pw (HSC wants an account)
    with serve(emu) as base:
        proxy = CuttingProxy(base)
        proxy.match = match
        app = make_app(
            {
                "archives": {"x": cfg(proxy.url)},
                "jobs": {"store": f"sqlite:///{tmp_path}/j.sqlite", "results_dir": str(tmp_path / "r")},
            },
            load_entrypoints=True,
        )
        try:
            c = app.test_client()
            whole = c.get("/tap/sync", query_string={"LANG": "ADQL", "QUERY": q}, headers=auth)
            assert whole.status_code == 200, whole.data[:500]
            assert len(parse_votable(whole.data)[0]) > 0
            for mode in ("close", "short", "chunked"):
                for fmt, value in FORMATS.items():
                    proxy.mode, n = mode, proxy.cuts
                    r = c.get(
                        "/tap/sync", query_string={"LANG": "ADQL", "QUERY": q, "RESPONSEFORMAT": value}, headers=auth
                    )
                    proxy.mode = None
                    assert proxy.cuts > n, (mode, fmt)
                    assert_not_complete(r, fmt)
        finally:
            app.extensions["vo_gateway"].jobs.close()
            proxy.close()


def test_a_client_that_leaves_cuts_the_upstream_call_off(tmp_path):
    """A sync query forwarded to a trickling upstream: when the client disconnects, the
    gateway hangs up on the upstream within a second (the request's upstream Scope), long
    before the call's 60 s deadline."""
    import socket as so
    import urllib.parse

    up = make_app(demo_config(tmp_path / "up"), load_entrypoints=True)
    with serve(up) as base:
        proxy = CuttingProxy(base)
        proxy.match, proxy.mode = "/sync", "trickle"
        front = make_app(
            {
                "archives": {
                    "cadc": {
                        "kind": "ivoa",
                        "tap_url": proxy.url + "/tap",
                        "schemas": {"demo": "up"},
                        "snapshot": str(tmp_path / "s.json"),
                        "deadline": 60,
                    }
                },
                "jobs": {"store": f"sqlite:///{tmp_path}/j.sqlite", "results_dir": str(tmp_path / "r")},
            },
            load_entrypoints=True,
        )
        try:
            with serve(front) as fbase:
                u = urllib.parse.urlsplit(fbase)
                s = so.create_connection((u.hostname, u.port))
                q = urllib.parse.urlencode({"LANG": "ADQL", "QUERY": QUERIES["plain"], "RESPONSEFORMAT": "csv"})
                s.sendall(f"GET /tap/sync?{q} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                time.sleep(1.0)
                assert proxy.cuts == 1 and proxy.closed_at is None
                s.close()
                gone = time.monotonic()
                while proxy.closed_at is None and time.monotonic() - gone < 10:
                    time.sleep(0.05)
                assert proxy.closed_at is not None and proxy.closed_at - gone < 1.0, proxy.closed_at
        finally:
            front.extensions["vo_gateway"].jobs.close()
            proxy.close()
    up.extensions["vo_gateway"].jobs.close()


@pytest.mark.parametrize("mode", ["close", "short", "chunked"])
def test_image_listings_and_cutouts_detect_truncation(mode, tmp_path):
    """SkyMapper's SIAP listing (CSV) and get_image cutout (FITS) cut in transit: an error
    naming the upstream, never a shorter list or a short FITS file."""
    from emulators.skymapper import skymapper_app

    with serve(skymapper_app()) as base:
        proxy = CuttingProxy(base)
        app = make_app(
            {
                "archives": {
                    "sm": {
                        "kind": "skymapper",
                        "cone_url": proxy.url + "/sm-cone/public/query",
                        "siap_url": proxy.url + "/siap/dr2",
                    }
                },
                "jobs": {"store": f"sqlite:///{tmp_path}/j.sqlite", "results_dir": str(tmp_path / "r")},
            },
            load_entrypoints=True,
        )
        try:
            c = app.test_client()
            pos = {"POS": "CIRCLE 33.639837321 -0.766719986 0.05"}
            whole = parse_votable(c.get("/sia/query", query_string=pos).data)[0]
            assert len(whole) > 0
            did = whole["obs_publisher_did"][0]
            soda = {"ID": did, "CIRCLE": "33.639837321 -0.766719986 0.01"}
            assert c.get("/soda/sm/sync", query_string=soda).data[:6] == b"SIMPLE"
            proxy.mode = mode
            for match, path, params in (("/query", "/sia/query", pos), ("/get_image", "/soda/sm/sync", soda)):
                proxy.match, n = match, proxy.cuts
                r = c.get(path, query_string=params)
                assert proxy.cuts > n and r.status_code == 503 and b"broke off" in r.data, (match, r.data[:300])
        finally:
            proxy.mode = None
            app.extensions["vo_gateway"].jobs.close()
            proxy.close()


def _emulator(kind: str, request):
    if kind == "hsc":
        from emulators.hsc import hsc_app

        return hsc_app(request.getfixturevalue("postgres_url"), users={"alice": "a-pw"})
    if kind == "mast":
        from emulators.mast import mast_app

        return mast_app()
    if kind == "skymapper":
        from emulators.skymapper import skymapper_app

        return skymapper_app()
    if kind == "sdss":
        from emulators.sdss import sdss_app

        return sdss_app()
    return make_app(demo_config(request.getfixturevalue("tmp_path") / "up"), load_entrypoints=True)  # a TAP upstream


FAULT_CASES = {
    **{k: v for k, v in REST_CASES.items()},
    "ivoa": (
        "/sync",
        lambda u: {"kind": "ivoa", "tap_url": u + "/tap", "schemas": {"demo": "up"}},
        "SELECT TOP 20 source_id, ra, dec FROM up.gaia_dr3_g10",
    ),
}


@pytest.mark.parametrize("kind", sorted(FAULT_CASES))
def test_hanging_and_failing_upstreams_of_every_kind(kind, tmp_path, request):
    """Each plugin kind behind a proxy that (1) holds the connection without answering, (2)
    answers 502 and (3) trickles its answer a byte every 0.1 s: a clear 503 naming the archive,
    within the configured deadline plus a margin, never a hang and never rows passed off as a
    result; afterwards the same query works (truncation and redirects: the tests above)."""
    emu = _emulator(kind, request)
    match, cfg, q = FAULT_CASES[kind]
    auth = {"Authorization": "Basic YWxpY2U6YS1wdw=="}
    tmp_path.mkdir(exist_ok=True)
    with serve(emu) as base:
        proxy = CuttingProxy(base)
        proxy.match = match
        section = {**cfg(proxy.url), "timeout": 1, "deadline": 4}
        if kind == "ivoa":
            section["snapshot"] = str(tmp_path / "s.json")
        app = make_app(
            {
                "archives": {"x": section},
                "jobs": {"store": f"sqlite:///{tmp_path}/j.sqlite", "results_dir": str(tmp_path / "r")},
            },
            load_entrypoints=True,
        )
        try:
            c = app.test_client()
            get = {"LANG": "ADQL", "QUERY": q}
            assert c.get("/tap/sync", query_string=get, headers=auth).status_code == 200
            for mode, says in (("hang", b"within"), ("5xx", b"502"), ("trickle", b"")):
                proxy.mode, n = mode, proxy.cuts
                t0 = time.monotonic()
                r = c.get("/tap/sync", query_string=get, headers=auth)
                took = time.monotonic() - t0
                proxy.mode = None
                assert proxy.cuts > n, mode
                assert r.status_code == 503, (mode, r.status_code, r.data[-400:])
                _, status, _ = parse_votable(r.data)
                assert status == "ERROR" and b"archive x: " in r.data and says in r.data, (mode, r.data[-400:])
                assert took < 4 + 2, (mode, took)  # the deadline, plus a margin on a loaded machine
            assert c.get("/tap/sync", query_string=get, headers=auth).status_code == 200  # recovered
        finally:
            app.extensions["vo_gateway"].jobs.close()
            proxy.close()
            if kind == "ivoa":
                emu.extensions["vo_gateway"].jobs.close()
