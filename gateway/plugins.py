"""Per-app pluggy plugin manager (project name and entry-point group ``vo_gateway``).

Nothing is loaded at import time: :func:`make_plugin_manager` is called by ``create_app``.
Built-ins (output formats, the HTTP Basic actor, the access log's row counts) are registered through the same hooks as third parties.
"""

from __future__ import annotations

import pluggy

from . import hookspecs

DEFAULT_PLUGINS = ("gateway.formats.builtin", "gateway.auth", "gateway.ops")


def make_plugin_manager(plugins=(), load_entrypoints: bool = True, blocked=()) -> pluggy.PluginManager:
    import importlib

    pm = pluggy.PluginManager("vo_gateway")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    for name in blocked:
        pm.set_blocked(name)
    if load_entrypoints:
        load_entry_points(pm)
    for p in plugins:
        pm.register(p)
    pm.check_pending()
    return pm


def entry_points() -> list:
    """The installed ``vo_gateway`` entry points, each once (a distribution installed twice,
    e.g. editable and in site-packages, lists its entry points twice)."""
    from importlib.metadata import entry_points as eps

    seen, out = set(), []
    for ep in eps(group="vo_gateway"):
        if ep.name not in seen:
            seen.add(ep.name)
            out.append(ep)
    return out


def load_entry_points(pm: pluggy.PluginManager) -> None:
    """Import and register every installed ``vo_gateway`` plugin that is not blocked.  A plugin
    that fails to import is reported by name, with its distribution and the way to block it,
    instead of a bare ``ModuleNotFoundError`` from every command.  Raises ConfigError."""
    from .config import ConfigError

    for ep in entry_points():
        if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as e:  # noqa: BLE001 - any import failure of a third-party plugin
            dist = f" (distribution {ep.dist.name} {ep.dist.version})" if ep.dist is not None else ""
            raise ConfigError(
                f"plugin {ep.name!r}{dist} failed to import: {type(e).__name__}: {e}\n"
                f"fix or uninstall it, or block it in config.yaml:\n  service:\n    plugins_blocked: [{ep.name}]"
            ) from None
        pm.register(plugin, name=ep.name)


def archive_kinds(pm: pluggy.PluginManager) -> dict:
    """kind -> Archive class, from every plugin's ``gateway_register_archives``.  Raises
    ConfigError when two plugins register one kind."""
    from .config import ConfigError

    kinds: dict = {}
    for classes in pm.hook.gateway_register_archives():
        for cls in classes or []:
            if cls.kind in kinds and kinds[cls.kind] is not cls:
                raise ConfigError(f"archive kind {cls.kind!r} is registered by two plugins")
            kinds[cls.kind] = cls
    return kinds
