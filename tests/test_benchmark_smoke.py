"""The benchmark runner still works (tiny sizes); numbers are printed, not asserted.  The two
that start gateways, emulators and STILTS of their own are ``slow`` (``.ci/run`` runs them)."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def bench(script: str, *args: str, timeout: int = 300) -> str:
    """Run ``benchmarks/<script>`` with ``args``; its standard output (it must exit 0)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


def test_bench_quick(live_url):
    stdout = bench("bench.py", "--quick", "--url", live_url)
    for fmt in ("votable", "csv", "fits"):
        assert f"  {fmt} " in stdout
    assert "SCS 1' cone" in stdout


def test_jobs_bench_quick(live_url):
    stdout = bench("jobs.py", "--quick", "--url", live_url)
    assert "jobs/s" in stdout and "WAIT wake-up" in stdout


@pytest.mark.slow
def test_web_bench_quick(live_url):
    """The page timings, server side and in headless Chromium."""
    stdout = bench("web.py", "--quick", "--url", live_url)
    assert "ratio to peer" in stdout and "Gaia cone example" in stdout and "rows in the DOM" in stdout


@pytest.mark.slow
def test_load_bench_quick():
    """The concurrent-clients load runner (gateway only, 10 clients for 3 s)."""
    stdout = bench("load.py", "--quick")
    assert "vo-gateway: 10 clients" in stdout and "  scs " in stdout and "  async " in stdout


@pytest.mark.slow
def test_vs_dachs_quick():
    """The DaCHS comparison runner on a tiny generated catalogue, gateway side only."""
    stdout = bench(
        "vs_dachs.py", "--no-dachs", "--quick", "--rows", "5000", "--catalog", "/nonexistent/catalog.csv", timeout=600
    )
    for line in (
        "SCS 1' cone median",
        "TAP 1000 rows BINARY2",
        "server RSS growth",
        "gateway overhead",
        "result size",
        "concurrent clients",
    ):
        assert line in stdout, stdout


def test_fuzz_bench_small():
    stdout = bench("fuzz.py", "--n", "200", "--seed", "5")
    assert "200 queries" in stdout and "bad answers (5xx, broken streams, in-band internal errors): 0" in stdout


@pytest.mark.slow
def test_federated_bench_quick():
    """The federated planner benchmark (50 targets against the MAST emulator): both ways find
    the astropy ground truth."""
    stdout = bench("federated.py", "--quick", timeout=600)
    assert "gateway planner (one sync TAP_UPLOAD query)" in stdout and "= truth" in stdout, stdout
    assert "DIFFER" not in stdout and "ms per query" in stdout, stdout


@pytest.mark.slow
def test_hats_lsdb_quick():
    """The HATS-against-LSDB runner on the suite's small catalogues (built by hats-import)."""
    stdout = bench("hats_lsdb.py", "--quick", timeout=900)
    for line in ("1' cone on Gaia", "upload x Gaia", 'crossmatch, 1"', "RSS against result size"):
        assert line in stdout
    assert "ROW COUNTS DIFFER" not in stdout
