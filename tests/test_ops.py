"""Operations (gateway/ops.py, docs/deployment.md § Operating it): request ids in answers, logs
and job documents; one access line per request with rows, bytes and upstream calls; the
Prometheus exposition parsed by prometheus_client's own parser; the health probes."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import numpy as np
import pyarrow.parquet as pq
import pytest
from emulators.skymapper import skymapper_app
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from gateway.sky import separation
from gateway.testing import make_app, serve
from tests.conftest import ROOT

UWS = "{http://www.ivoa.net/xml/UWS/v1.0}"


def metrics(client) -> dict[tuple, float]:
    """``/metrics`` parsed: {(sample name, sorted labels): value}."""
    r = client.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    out = {}
    for family in text_string_to_metric_families(r.get_data(as_text=True)):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def access_lines(logs) -> list[dict]:
    return [e for e in logs if e.get("event") == "request"]


def test_request_ids_are_echoed_logged_and_kept_in_jobs(client):
    with capture_logs() as logs:
        r = client.get(
            "/tap/sync?LANG=ADQL&QUERY=SELECT+TOP+1+ra+FROM+demo.sdss_stars", headers={"X-Request-ID": "my-id.1"}
        )
        r.get_data()
        bad = client.get("/healthz", headers={"X-Request-ID": "x" * 65})
        odd = client.get("/healthz", headers={"X-Request-ID": "a b;<x>"})
    assert r.headers["X-Request-ID"] == "my-id.1"
    assert len(bad.headers["X-Request-ID"]) == 16 and odd.headers["X-Request-ID"] != "a b;<x>"
    ids = [e["request_id"] for e in access_lines(logs)]
    assert ids == ["my-id.1", bad.headers["X-Request-ID"], odd.headers["X-Request-ID"]]
    job = client.post(
        "/tap/async",
        data={"LANG": "ADQL", "QUERY": "SELECT TOP 2 ra FROM demo.sdss_stars", "PHASE": "RUN"},
        headers={"X-Request-ID": "job-maker"},
    ).headers["Location"]
    for _ in range(300):
        if client.get(job + "/phase").data in (b"COMPLETED", b"ERROR"):
            break
        time.sleep(0.05)
    doc = ET.fromstring(client.get(job).data)
    info = json.loads(doc.find(f"{UWS}jobInfo/{{urn:vo-gateway:jobinfo}}info").text)
    assert info["request_id"] == "job-maker" and doc.findtext(f"{UWS}phase") == "COMPLETED" and info["rows"] == 2
    client.post(job, data={"ACTION": "DELETE"})


def test_access_line_has_rows_bytes_and_duration(client):
    s = pq.read_table(ROOT / "data/demo/sdss_stars.parquet").to_pandas()
    inside = int((separation(s.ra.to_numpy(), s.dec.to_numpy(), 200.45, 36.8) <= 0.05).sum())
    with capture_logs() as logs:
        r = client.get("/scs/demo.sdss_stars", query_string={"RA": 200.45, "DEC": 36.8, "SR": 0.05})
        body = r.get_data()
        client.get("/tap/sync?LANG=ADQL&QUERY=SELEC")
    scs, bad = access_lines(logs)
    assert scs["rows"] == inside > 0 and scs["bytes"] == len(body) and scs["status"] == 200
    assert scs["protocol"] == "scs" and scs["archive"] == "demo" and scs["path"] == "/scs/demo.sdss_stars"
    assert scs["ms"] > 0 and "SR" not in json.dumps(scs)  # no query string in the log
    assert bad["status"] == 400 and bad["rows"] == 0


def test_metrics_count_requests_rows_bytes_and_jobs(client):
    before = metrics(client)
    r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": "SELECT TOP 7 ra FROM demo.gaia_dr3_g10"})
    n = len(r.get_data())
    client.get("/tap/sync?LANG=ADQL&QUERY=SELEC").get_data()
    after = metrics(client)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("vo_gateway_requests_total", protocol="tap", status="200") == 1
    assert delta("vo_gateway_requests_total", protocol="tap", status="400") == 1
    assert delta("vo_gateway_rows_streamed_total", protocol="tap") == 7
    assert delta("vo_gateway_bytes_streamed_total", protocol="tap") >= n
    assert delta("vo_gateway_request_duration_seconds_count", protocol="tap") == 2
    phases = {dict(k[1])["phase"]: v for k, v in after.items() if k[0] == "vo_gateway_jobs"}
    store = client.application.extensions["vo_gateway"].jobs.store
    assert phases == {k: float(v) for k, v in store.count_by_phase().items()}


def test_health_and_readiness(client, monkeypatch):
    assert client.get("/healthz").data == b"ok\n"
    assert client.get("/readyz").status_code == 200
    store = client.application.extensions["vo_gateway"].jobs.store

    def down():
        raise OSError("connection refused")

    monkeypatch.setattr(store, "ping", down)
    r = client.get("/readyz")
    assert r.status_code == 503 and b"job store unreachable" in r.data
    assert client.get("/healthz").status_code == 200  # alive, just not ready


@pytest.fixture(scope="module")
def sm(tmp_path_factory):
    emu = skymapper_app()
    with serve(emu) as base:
        tmp = tmp_path_factory.mktemp("ops-sm")
        cfg = {
            "archives": {"sm": {"kind": "skymapper", "cone_url": base + "/sm-cone/public/query", "timeout": 2}},
            "jobs": {"store": f"sqlite:///{tmp}/j.sqlite", "results_dir": str(tmp / "r")},
        }
        app = make_app(cfg, load_entrypoints=True)
        yield app.test_client(), emu, base
        app.extensions["vo_gateway"].jobs.close()


def test_upstream_calls_are_logged_and_counted_without_query_strings(sm):
    client, emu, base = sm
    before = metrics(client)
    with capture_logs() as logs:
        r = client.get("/scs/skymapper_dr2.master", query_string={"RA": 33.64, "DEC": -0.77, "SR": 0.05})
        r.get_data()
    (line,) = access_lines(logs)
    t = emu.catalogue("dr2.master")
    truth = int((separation(t["raj2000"].to_numpy(), t["dej2000"].to_numpy(), 33.64, -0.77) <= 0.05).sum())
    assert line["rows"] == truth and line["archive"] == "sm"
    (call,) = line["upstream"]
    assert call["endpoint"] == base + "/sm-cone/public/query" and call["status"] == "200" and call["ms"] > 0
    assert call["archive"] == "sm"
    after = metrics(client)
    key = ("vo_gateway_upstream_requests_total", (("archive", "sm"), ("status", "200")))
    assert after[key] - before.get(key, 0) == 1
    assert np.isfinite(after[("vo_gateway_upstream_request_duration_seconds_sum", (("archive", "sm"),))])


def test_metrics_sum_every_worker(tmp_path):
    """Under ``vo-gateway serve --workers 2`` every scrape, whichever worker answers it, counts
    the requests all workers answered (prometheus-client's multiprocess mode)."""
    import os
    import signal

    import requests

    from gateway.testing import start_process
    from tests.conftest import live_config

    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"} | {"PYTHONWARNINGS": "ignore"}
    proc, url = start_process(live_config(tmp_path), extra_args=["--workers", "2", "--threads", "4"], env=env)
    key = ("vo_gateway_requests_total", (("protocol", "tap"), ("status", "200")))

    def scrape() -> dict:
        r = requests.get(url + "/metrics")  # a new connection each time: either worker may answer
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(r.text)
            for s in f.samples
        }

    try:
        before = scrape()[key]  # the start-up probes of /tap/availability
        s = requests.Session()
        for _ in range(40):
            s.get(
                url + "/tap/sync", params={"LANG": "ADQL", "QUERY": "SELECT TOP 1 ra FROM demo.sdss_stars"}
            ).raise_for_status()
        assert [scrape()[key] for _ in range(8)] == [before + 40] * 8
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
