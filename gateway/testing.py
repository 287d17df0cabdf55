"""Test kit for vo-gateway and archive-plugin authors (a pytest plugin, entry point
``pytest11: vo_gateway``).

Fixtures/helpers:

* :func:`make_app` — an isolated app from a config dict, with explicit plugins and no entry
  points unless asked.
* :func:`serve` — run a WSGI app on a free loopback port in a thread (context manager yielding
  the base URL), for real clients (pyvo, STILTS) against an app built in the test.
* :func:`parse_votable` — parse VOTable bytes with astropy (pedantic) and return
  ``(table, query_status, infos)``; raises AssertionError if it is not a valid DALI result.
* fixture ``gateway_factory`` — ``gateway_factory(config_dict, plugins=[...])`` -> Flask test client.
* :func:`start_process` — a real ``vo-gateway serve`` process on a config file (for clients that
  need a separate server).
* :func:`taplint` and :func:`votlint` — STILTS's TAP and VOTable validators, their ERROR and
  FAILURE (taplint) or ERROR and WARNING (votlint) reports as a list: empty means clean.
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import warnings

import pytest


def make_app(config: dict, plugins=(), load_entrypoints: bool = False, base_dir=None):
    """An app for ``config`` (a dict as config.yaml would give).  The result cache is off
    unless ``config`` has a ``cache`` section, so every query reaches the (emulated) upstream;
    the request limits are off unless it has a ``limits`` section (a test's requests all come
    from 127.0.0.1)."""
    from pathlib import Path

    from .app import create_app
    from .config import load_config

    cfg = load_config(data={"cache": {"ttl": 0}, "limits": {"enabled": False}, **config})
    if base_dir is not None:
        cfg.base_dir = Path(base_dir)
    return create_app(cfg, plugins=plugins, load_entrypoints=load_entrypoints)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(app):
    """Serve ``app`` with a threaded werkzeug server on 127.0.0.1; yields the base URL."""
    from werkzeug.serving import make_server

    srv = make_server("127.0.0.1", free_port(), app, threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()


def start_process(config_path, port: int | None = None, log=None, extra_args=(), env=None, wrap=None):
    """Start ``vo-gateway serve`` (gunicorn gthread) on a loopback port and wait until
    ``/tap/availability`` answers; returns ``(Popen, base_url)``.  ``extra_args``: more
    ``serve`` options (``--workers 2``); ``env``: the whole environment (default: this one with
    Python warnings off); ``wrap(argv) -> argv``: run the command inside another (``unshare``).
    The process leads its own session, so ``os.killpg(proc.pid, signal.SIGKILL)`` kills master
    and workers.  Raises RuntimeError if it does not start."""
    import os
    import subprocess
    import sys
    import time

    import requests

    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "gateway.cli",
        "serve",
        "--config",
        str(config_path),
        "--port",
        str(port),
        *extra_args,
    ]
    proc = subprocess.Popen(
        wrap(argv) if wrap is not None else argv,
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        env=env if env is not None else {**os.environ, "PYTHONWARNINGS": "ignore"},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if requests.get(url + "/tap/availability", timeout=2).ok:
                return proc, url
        except requests.ConnectionError:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited with status {proc.returncode}")
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("gateway did not start")


def parse_votable(data: bytes):
    """Parse a DALI VOTable result; return (astropy Table or None, QUERY_STATUS, {INFO name: value})."""
    from astropy.io.votable import parse
    from astropy.io.votable.exceptions import W03, W47

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", W03)  # FIELD names that are no XML IDs (uploads) get no ID attribute
        warnings.simplefilter("ignore", W47)  # char without arraysize is one character (VOTable 1.3 Erratum 3)
        vot = parse(io.BytesIO(data), verify="exception")
    res = vot.resources[0]
    assert res.type == "results", "first RESOURCE must have type='results'"
    infos = {i.name: i.value for i in res.infos}
    statuses = [i for i in res.infos if i.name == "QUERY_STATUS"]
    assert statuses, "no QUERY_STATUS INFO"
    status = statuses[-1].value
    table = res.tables[0].to_table() if res.tables else None
    return table, status, infos


@pytest.fixture
def gateway_factory():
    def factory(config: dict, plugins=(), load_entrypoints=False, base_dir=None):
        return make_app(config, plugins, load_entrypoints, base_dir).test_client()

    return factory


ALL_TAPLINT_STAGES = "TMV TME TMS TMC CPV CAP AVV QGE QPO QAS UWS MDQ OBS UPL EXA"  # all but LOC (no ObsLocTAP)


def taplint(tap_url: str, stages: str = ALL_TAPLINT_STAGES, *extra: str) -> tuple[list, dict]:
    """Run ``stilts taplint`` (JSON report) and return (ERROR/FAILURE reports, whole report).
    taplint always exits 0, so the report is what tells.  Needs ``stilts`` on PATH."""
    import json
    import subprocess

    out = subprocess.run(
        [
            "stilts",
            "taplint",
            f"tapurl={tap_url}",
            f"stages={stages}",
            "format=json",
            "report=EWF",
            "maxrepeat=4",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    doc = json.loads(out.stdout)
    bad = [
        (s["code"], r["code"], r.get("text") or r.get("lines"))
        for s in doc["sections"]
        for r in s["reports"]
        if r["level"] in ("ERROR", "FAILURE")
    ]
    return bad, doc


def votlint(votable: bytes, tmp_dir) -> list[str]:
    """The ERROR and WARNING lines ``stilts votlint`` reports for a VOTable document (written
    to ``tmp_dir``); an empty list is a clean document.  Needs ``stilts`` on PATH."""
    import subprocess
    from pathlib import Path

    f = Path(tmp_dir) / "votlint.vot"
    f.write_bytes(votable)
    out = subprocess.run(["stilts", "votlint", f"votable={f}"], capture_output=True, text=True, timeout=120)
    return [x for x in (out.stdout + out.stderr).splitlines() if x.startswith(("ERROR", "WARNING"))]
