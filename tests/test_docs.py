"""Every hook in gateway/hookspecs.py is documented in docs/plugin_hooks.md with its exact
signature; README commands exist."""

import inspect
import re

from gateway import hookspecs
from tests.conftest import ROOT


def test_every_hook_documented():
    doc = (ROOT / "docs/plugin_hooks.md").read_text()
    documented = dict(re.findall(r"^## (gateway_\w+)\((.*)\)$", doc, re.M))
    hooks = {n: f for n, f in vars(hookspecs).items() if n.startswith("gateway_") and callable(f)}
    assert hooks, "no hooks found"
    for name, fn in hooks.items():
        assert name in documented, f"{name} is not documented in docs/plugin_hooks.md"
        assert documented[name] == ", ".join(inspect.signature(fn).parameters), f"{name}: signature differs"
        assert fn.__doc__ and len(fn.__doc__) > 40, f"{name} has no docstring"
    assert set(documented) == set(hooks), "docs describe hooks that do not exist"


def test_readme_commands():
    readme = (ROOT / "README.md").read_text()
    for cmd in ("pip install -e", "vo-gateway serve", "python -m pytest", "/tap"):
        assert cmd in readme
