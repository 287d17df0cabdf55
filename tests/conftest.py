"""Shared fixtures: one app on the default config.yaml (test client), and one live
``vo-gateway serve`` process (gunicorn gthread) for real clients."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# STILTS runs (taplint, votlint, tapquery, ...) are short JVMs: the quick compiler alone and one
# GC thread halve their CPU time (a taplint of the federated service: 9 -> 3 CPU-seconds)
os.environ.setdefault("JAVA_TOOL_OPTIONS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    from gateway.app import create_app

    return create_app(live_config(tmp_path_factory.mktemp("app")))


@pytest.fixture
def client(app):
    return app.test_client()


def demo_config(tmp: Path, **sections) -> dict:
    """config.yaml with its paths kept, jobs stored under ``tmp``, and ``sections`` merged in."""
    import yaml

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["base_dir"] = str(ROOT)
    cfg["jobs"] = {"store": f"sqlite:///{tmp}/jobs.sqlite", "results_dir": str(tmp / "results"), "heartbeat": 0.5}
    # the suite's many requests from 127.0.0.1 are not a client to limit; tests/test_rate_limits.py
    # turns the limits on where it tests them
    cfg["limits"] = {"enabled": False}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


def live_config(tmp: Path, **sections) -> Path:
    """:func:`demo_config` written to ``tmp/config.yaml`` (for ``vo-gateway serve``)."""
    import yaml

    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(demo_config(tmp, **sections)))
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


needs_stilts = pytest.mark.skipif(
    not stilts_available() and not os.environ.get("CI"), reason="stilts not installed (apt-get install stilts)"
)


def _need(binary_ok: bool, what: str):
    if not binary_ok:
        if os.environ.get("CI"):
            raise RuntimeError(f"{what} is not installed; .ci/run installs it")
        pytest.skip(f"{what} not installed")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real Redis (Debian ``redis-server``) on a loopback port, stopped by PID afterwards."""
    import socket
    import subprocess
    import time
    from shutil import which

    from gateway.testing import free_port

    _need(which("redis-server") is not None, "redis-server")
    port = free_port()
    d = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(d),
        ],
        stdout=open(d / "log", "w"),
        stderr=subprocess.STDOUT,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A real PostgreSQL cluster (Debian packages) in a temporary directory on a loopback port,
    run as the ``postgres`` user when the tests run as root; stopped by PID afterwards."""
    import glob
    import pwd
    import subprocess
    import time

    from gateway.testing import free_port

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    _need(bool(bins), "PostgreSQL server")
    bindir = os.path.dirname(bins[-1])
    d = tmp_path_factory.mktemp("pg")
    data = d / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chmod(d, 0o777)
        for p in (d, *d.parents):
            if str(p) == "/":
                break
            os.chmod(p, os.stat(p).st_mode | 0o011)  # let postgres traverse to the directory
        as_user = ["runuser", "-u", "postgres", "--"]
        data.mkdir()
        os.chown(data, pw.pw_uid, pw.pw_gid)
    subprocess.run(
        as_user + [f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    proc = subprocess.Popen(
        as_user
        + [
            f"{bindir}/postgres",
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(d),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "jit=off",  # compiling a small query's plan costs more than running it
        ],
        stdout=open(d / "log", "w"),
        stderr=subprocess.STDOUT,
    )
    for _ in range(100):
        if (
            subprocess.run([f"{bindir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode
            == 0
        ):
            break
        time.sleep(0.1)
    yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    proc.terminate()
    proc.wait(20)
