"""Per-app pluggy plugin manager (project name and entry-point group ``vo_gateway``).

Nothing is loaded at import time: :func:`make_plugin_manager` is called by ``create_app``.
Built-ins (output formats, the HTTP Basic actor) are registered through the same hooks as third parties.
"""

from __future__ import annotations

import pluggy

from . import hookspecs

DEFAULT_PLUGINS = ("gateway.formats.builtin", "gateway.auth")


def make_plugin_manager(plugins=(), load_entrypoints: bool = True, blocked=()) -> pluggy.PluginManager:
    import importlib

    pm = pluggy.PluginManager("vo_gateway")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    for name in blocked:
        pm.set_blocked(name)
    if load_entrypoints:
        pm.load_setuptools_entrypoints("vo_gateway")
    for p in plugins:
        pm.register(p)
    pm.check_pending()
    return pm
