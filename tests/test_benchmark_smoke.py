"""The benchmark runner still works (tiny sizes); numbers are printed, not asserted.  The two
that start gateways, emulators and STILTS of their own are ``slow`` (``.ci/run`` runs them)."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_bench_quick(live_url):
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/bench.py"), "--quick", "--url", live_url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    for fmt in ("votable", "csv", "fits"):
        assert f"  {fmt} " in out.stdout
    assert "SCS 1' cone" in out.stdout


def test_jobs_bench_quick(live_url):
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/jobs.py"), "--quick", "--url", live_url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "jobs/s" in out.stdout and "WAIT wake-up" in out.stdout


@pytest.mark.slow
def test_web_bench_quick(live_url):
    """The page timings, server side and in headless Chromium."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/web.py"), "--quick", "--url", live_url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "ratio to peer" in out.stdout and "Gaia cone example" in out.stdout and "rows in the DOM" in out.stdout


@pytest.mark.slow
def test_load_bench_quick():
    """The concurrent-clients load runner (gateway only, 10 clients for 3 s)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/load.py"), "--quick"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "vo-gateway: 10 clients" in out.stdout and "  scs " in out.stdout and "  async " in out.stdout


@pytest.mark.slow
def test_vs_dachs_quick():
    """The DaCHS comparison runner on a tiny generated catalogue, gateway side only."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/vs_dachs.py"),
            "--no-dachs",
            "--quick",
            "--rows",
            "5000",
            "--catalog",
            "/nonexistent/catalog.csv",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for line in (
        "SCS 1' cone median",
        "TAP 1000 rows BINARY2",
        "server RSS growth",
        "gateway overhead",
        "result size",
        "concurrent clients",
    ):
        assert line in out.stdout, out.stdout


def test_fuzz_bench_small():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/fuzz.py"), "--n", "200", "--seed", "5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "200 queries" in out.stdout and "bad answers (5xx, broken streams, in-band internal errors): 0" in out.stdout


@pytest.mark.slow
def test_federated_bench_quick():
    """The federated planner benchmark (50 targets against the MAST emulator): both ways find
    the astropy ground truth."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/federated.py"), "--quick"], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "gateway planner (one sync TAP_UPLOAD query)" in out.stdout and "= truth" in out.stdout, out.stdout
    assert "DIFFER" not in out.stdout and "ms per query" in out.stdout, out.stdout
