"""Layering rules of the code base (docs/writing_an_archive.md): a first-party plugin depends
on the core alone, as a third party's would, and the core's services never reach into the
protocol (HTTP) layer."""

import ast
import tomllib

from conftest import ROOT

PLUGINS = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists())


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


def test_no_plugin_imports_another_plugin():
    found = set()
    for name in PLUGINS:
        own = f"vo_gateway_{name}"
        for path in (ROOT / "plugins" / name).rglob("*.py"):
            if "build" in path.parts:
                continue
            for mod in _imports(path):
                if mod.startswith("vo_gateway_") and mod != own:
                    found.add((name, mod))
    assert found == set()


def test_no_plugin_distribution_requires_another_plugin():
    found = set()
    for name in PLUGINS:
        deps = tomllib.loads((ROOT / "plugins" / name / "pyproject.toml").read_text())["project"]["dependencies"]
        for dep in deps:
            dist = dep.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip()
            if dist.startswith("vo-gateway-"):
                found.add((name, "vo_gateway_" + dist[len("vo-gateway-") :]))
    assert found == set()


def test_services_do_not_import_the_protocol_layer():
    bad = [
        (p.name, m)
        for p in (ROOT / "gateway" / "services").glob("*.py")
        for m in _relative_imports(p)
        if m.startswith("protocols")
    ]
    assert bad == []


def _relative_imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level >= 2 and node.module:
            yield node.module


def test_the_package_knows_its_version_and_upstreams_hear_it():
    import gateway
    from gateway.upstream import UpstreamSession

    assert gateway.__version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert UpstreamSession(None, 5).headers["User-Agent"].startswith(f"vo-gateway/{gateway.__version__} ")


def test_skymapper_and_mast_take_only_their_own_keys():
    """A kind's config model has its own keys (and the core's TAP client keys where its upstream
    speaks TAP), not another kind's: ``sia2_url`` and ``cone_services`` belong to ``ivoa``."""
    import pytest
    from pydantic import ValidationError
    from vo_gateway_mast.archive import MastArchive
    from vo_gateway_skymapper.archive import SkyMapperArchive

    for cls, extra in (
        (SkyMapperArchive, {"sia2_url": "https://x.example/sia"}),
        (SkyMapperArchive, {"cone_services": []}),
        (SkyMapperArchive, {"datalink_url": "https://x.example/dl"}),
        (MastArchive, {"tap_url": "https://x.example/tap"}),
    ):
        with pytest.raises(ValidationError, match=next(iter(extra))):
            cls.Config.model_validate({"kind": cls.kind, **extra})


def test_plugins_import_only_the_documented_sdk():
    """Every ``gateway`` name a first-party plugin imports is listed in the plugin SDK section
    of docs/writing_an_archive.md, and none is private."""
    import re

    doc = (ROOT / "docs/writing_an_archive.md").read_text().split("## The plugin SDK", 1)[1]
    sdk: dict[str, set[str]] = {}
    for item in re.split(r"\n- ", doc):
        for module in re.findall(r"`(gateway(?:\.\w+)+)`", item):
            sdk[module] = set(re.findall(r"`(\w+)`", item))
    used = set()
    for name in PLUGINS:
        for path in (ROOT / "plugins" / name).rglob("*.py"):
            if "build" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gateway"):
                    used |= {(node.module, a.name) for a in node.names}
    assert used, "no plugin imports found"
    bad = sorted((m, n) for m, n in used if m not in sdk or n not in sdk[m] or n.startswith("_"))
    assert bad == [], f"not in the documented SDK: {bad}"
