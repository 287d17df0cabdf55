"""Shared fixtures: one app on the default config.yaml (test client), and one live
``vo-gateway serve`` process (gunicorn gthread) for real clients."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def app():
    from gateway.app import create_app
    return create_app(ROOT / "config.yaml")


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def live_url(tmp_path_factory):
    from gateway.testing import free_port
    port = free_port()
    log = tmp_path_factory.mktemp("live") / "gateway.log"
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(ROOT / "config.yaml"),
                             "--port", str(port), "--threads", "8"], stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if requests.get(url + "/tap/availability", timeout=2).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("gateway did not start:\n" + log.read_text())
    yield url
    proc.terminate()
    proc.wait(10)


def stilts_available():
    from shutil import which
    return which("stilts") is not None


needs_stilts = pytest.mark.skipif(not stilts_available() and not os.environ.get("CI"),
                                  reason="stilts not installed (apt-get install stilts)")
