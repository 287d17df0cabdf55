"""``vo-gateway new-archive``: the generated plugin (a REST survey) answers pyvo TAP and SCS,
its own tests pass, and it passes the project's lint."""

import subprocess
import sys

from conftest import ROOT

from gateway.cli import main


def test_a_generated_rest_survey_plugin_works(tmp_path, capsys):
    out = tmp_path / "vo-gateway-my-survey"
    assert main(["new-archive", "my_survey", "--dir", str(out)]) == 0
    assert "wrote 7 files" in capsys.readouterr().out
    # its own tests: pyvo TAP (a cone with a residual condition and ORDER BY, an upload
    # crossmatch) and SCS, each against numpy over the emulator's rows
    env_path = f"{out}"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(out / "tests")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=out,
        env={**__import__("os").environ, "PYTHONPATH": env_path},
    )
    assert proc.returncode == 0 and "3 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "F,E9", str(out)], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout
    assert main(["new-archive", "my_survey", "--dir", str(out)]) == 2  # never over an existing plugin
    assert main(["new-archive", "My-Survey", "--dir", str(tmp_path / "x")]) == 2


def test_the_template_is_what_the_docs_describe():
    doc = (ROOT / "docs/writing_an_archive.md").read_text()
    assert "vo-gateway new-archive" in doc
