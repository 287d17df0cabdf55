"""Shared fixtures: one app on the default config.yaml (test client), and one live
``vo-gateway serve`` process (gunicorn gthread) for real clients."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    from gateway.app import create_app
    return create_app(live_config(tmp_path_factory.mktemp("app")))


@pytest.fixture
def client(app):
    return app.test_client()


def live_config(tmp: Path, **sections) -> Path:
    """config.yaml with its paths kept, jobs stored under ``tmp``, and ``sections`` merged in."""
    import yaml
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["base_dir"] = str(ROOT)
    cfg["jobs"] = {"store": f"sqlite:///{tmp}/jobs.sqlite", "results_dir": str(tmp / "results"), "heartbeat": 0.5}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def live_url(tmp_path_factory):
    from gateway.testing import start_process
    tmp = tmp_path_factory.mktemp("live")
    log = tmp / "gateway.log"
    try:
        proc, url = start_process(live_config(tmp), log=open(log, "w"))
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
