"""``vo-gateway`` command line: serve, plugins, tables, check-config."""
from __future__ import annotations

import argparse
import os
import sys

from .config import ConfigError


def _app(path):
    from .app import create_app
    return create_app(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="vo-gateway", description="IVOA gateway to astronomical archives")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the service (gunicorn -k gthread)")
    s.add_argument("--config", default=None, help="config file (default: $VO_GATEWAY_CONFIG or ./config.yaml)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--threads", type=int, default=8)
    for name, help_ in (("plugins", "list installed plugins and archive kinds"),
                        ("tables", "list the tables of the configured archives"),
                        ("check-config", "validate the configuration and build every archive")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", default=None)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "serve":
            return serve(args)
        app = _app(args.config)
    except ConfigError as e:
        print(f"configuration error:\n{e}", file=sys.stderr)
        return 2
    gw = app.extensions["vo_gateway"]
    if args.cmd == "plugins":
        for name, plugin in gw.pm.list_name_plugin():
            print(name)
        print("archive kinds: " + ", ".join(f"{k} ({c.__module__})" for k, c in sorted(gw.kinds.items())))
    elif args.cmd == "tables":
        for archive, t in gw.catalogue.tables():
            print(f"{t.qualified_name}\t{archive}\t{t.nrows if t.nrows is not None else ''}\t{t.description or ''}")
    else:
        print(f"configuration OK: {len(gw.catalogue.archives) - 1} archive(s), {len(gw.catalogue.tables())} tables")
    return 0


def serve(args) -> int:
    from gunicorn.app.base import BaseApplication

    config = os.path.abspath(args.config or os.environ.get("VO_GATEWAY_CONFIG", "config.yaml"))
    app = _app(config)  # validate before forking

    class App(BaseApplication):
        def load_config(self):
            for k, v in {"bind": f"{args.host}:{args.port}", "worker_class": "gthread", "workers": args.workers,
                         "threads": args.threads, "timeout": 300, "keepalive": 5}.items():
                self.cfg.set(k, v)

        def load(self):
            return app

    App().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
