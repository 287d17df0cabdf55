"""Shared fixtures: one app on the default config.yaml (test client), and one live
``vo-gateway serve`` process (gunicorn gthread) for real clients."""
import os
from pathlib import Path

import pytest

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
    from gateway.testing import start_process
    log = tmp_path_factory.mktemp("live") / "gateway.log"
    try:
        proc, url = start_process(ROOT / "config.yaml", log=open(log, "w"))
    except RuntimeError:
        raise RuntimeError("gateway did not start:\n" + log.read_text())
    yield url
    proc.terminate()
    proc.wait(10)


def stilts_available():
    from shutil import which
    return which("stilts") is not None


needs_stilts = pytest.mark.skipif(not stilts_available() and not os.environ.get("CI"),
                                  reason="stilts not installed (apt-get install stilts)")
