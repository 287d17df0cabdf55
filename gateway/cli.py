"""``vo-gateway`` command line: serve, worker, jobs, explain, new-archive, plugins, tables,
check-config."""

from __future__ import annotations

import argparse
import os
import sys

from .config import ConfigError


def _app(path):
    from .app import create_app

    return create_app(path)


CONFIG_HELP = "config file (default: $VO_GATEWAY_CONFIG, else ./config.yaml)"


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("vo-gateway")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def main(argv=None) -> int:
    fmt = _Help
    ap = argparse.ArgumentParser(prog="vo-gateway", description="IVOA gateway to astronomical archives")
    ap.add_argument("--version", action="version", version=f"vo-gateway {version()}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the service (gunicorn -k gthread)", formatter_class=fmt)
    s.add_argument("--config", default=None, help=CONFIG_HELP)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    s.add_argument("--port", type=int, default=8000, help="TCP port")
    s.add_argument("--workers", type=int, default=1, help="gunicorn worker processes")
    s.add_argument("--threads", type=int, default=8, help="request threads per worker")
    w = sub.add_parser("worker", help="run UWS jobs from the distributed queue (jobs.executor: huey)")
    w.add_argument("--config", default=None, help=CONFIG_HELP)
    w.add_argument("--workers", type=int, default=None, help="job threads (default: jobs.workers)")
    j = sub.add_parser("jobs", help="list, show or delete UWS jobs in the job store")
    j.add_argument("--config", default=None, help=CONFIG_HELP)
    j.add_argument("action", choices=["list", "show", "delete"])
    j.add_argument("job_id", nargs="?")
    j.add_argument("--phase", action="append", default=[], help="list: only jobs in this phase (repeatable)")
    j.add_argument("--last", type=int, default=None, help="list: only the n most recent jobs")
    e = sub.add_parser("explain", help="show how the gateway would answer an ADQL query (docs/planner.md)")
    e.add_argument("--config", default=None, help=CONFIG_HELP)
    e.add_argument("query", help="the ADQL query")
    e.add_argument(
        "--upload",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a TAP_UPLOAD table (VOTable, FITS or CSV file) the query names as TAP_UPLOAD.NAME",
    )
    n = sub.add_parser("new-archive", help="write a new archive plugin (REST cone API) with an emulator and tests")
    n.add_argument("name", help="the archive kind, a lower-case identifier")
    n.add_argument("--dir", default=None, help="where to write it (default: ./vo-gateway-NAME)")
    for name, help_ in (
        ("plugins", "list installed plugins and archive kinds"),
        ("tables", "list the tables of the configured archives"),
        ("check-config", "validate the configuration and build every archive"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", default=None, help=CONFIG_HELP)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "serve":
            return serve(args)
        if args.cmd == "plugins":
            return plugins(args)
        if args.cmd == "jobs":
            return jobs(args)
        if args.cmd == "new-archive":
            return new_archive(args)
        app = _app(args.config)
    except ConfigError as e:
        print(f"configuration error:\n{e}", file=sys.stderr)
        return 2
    gw = app.extensions["vo_gateway"]
    if args.cmd == "worker":
        return worker(gw, args)
    if args.cmd == "explain":
        return explain(gw, args)
    if args.cmd == "tables":
        for archive, t in gw.catalogue.tables():
            print(f"{t.qualified_name}\t{archive}\t{t.nrows if t.nrows is not None else ''}\t{t.description or ''}")
    else:
        print(f"configuration OK: {len(gw.catalogue.archives) - 1} archive(s), {len(gw.catalogue.tables())} tables")
    return 0


def plugins(args) -> int:
    """The installed plugins and archive kinds; needs no config file (one given, or found, only
    adds its ``service.plugins_blocked``)."""
    from pathlib import Path

    from .config import load_config
    from .plugins import archive_kinds, entry_points, make_plugin_manager

    path = (
        args.config or os.environ.get("VO_GATEWAY_CONFIG") or ("config.yaml" if Path("config.yaml").exists() else None)
    )
    blocked = load_config(path).service.plugins_blocked if path else []
    pm = make_plugin_manager(load_entrypoints=True, blocked=blocked)
    for ep in entry_points():
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "?"
        print(f"{ep.name}\t{dist}\t{'blocked' if ep.name in blocked else ep.value}")
    kinds = archive_kinds(pm)
    print("archive kinds: " + ", ".join(f"{k} ({c.__module__})" for k, c in sorted(kinds.items())))
    return 0


def new_archive(args) -> int:
    """Write a plugin distribution for a new archive kind (:mod:`gateway.newarchive`)."""
    from pathlib import Path

    from .newarchive import new_archive as write

    directory = Path(args.dir or f"vo-gateway-{args.name.replace('_', '-')}")
    try:
        files = write(args.name, directory)
    except ValueError as e:
        print(f"new-archive: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {len(files)} files to {directory}; next: cd {directory} && pip install -e '.[test]' && "
        "python -m pytest -q tests"
    )
    return 0


def explain(gw, args) -> int:
    """Print the plan of a query as JSON: the archive that runs it whole, or each archive's
    request, why, and what runs here.  A refused query prints the user's error and exits 1."""
    import io
    import json
    from pathlib import Path

    from .faults import Fault

    files = {}
    for item in args.upload:
        name, sep, path = item.partition("=")
        if not sep:
            print(f"--upload {item!r}: expected NAME=FILE", file=sys.stderr)
            return 2
        files[name] = Path(path)
    try:
        uploads = gw.queries.read_uploads(
            [f"{n},param:{n}" for n in files],
            lambda part: io.BytesIO(files[part].read_bytes()) if part in files else None,
        )
        print(json.dumps(gw.queries.explain(args.query, uploads), indent=2))
    except Fault as f:
        print(f"query refused: {f}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"cannot read an upload: {e}", file=sys.stderr)
        return 2
    return 0


def worker(gw, args) -> int:
    """Consume the huey queue: the same job code as in-process, in this process."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if gw.config.jobs.executor != "huey":
        print(
            "configuration error:\njobs.executor: the worker needs executor: huey (with jobs.queue_url)",
            file=sys.stderr,
        )
        return 2
    gw.jobs.start()
    try:
        gw.jobs.executor.consume(args.workers or gw.config.jobs.workers)
    finally:
        gw.jobs.close()
    return 0


def jobs(args) -> int:
    """Operator view of the job store (all owners and services); needs no archive."""
    from .config import load_config
    from .uws.job import isoformat
    from .uws.service import JobService
    from .uws.xml import job_document

    cfg = load_config(args.config)
    service = JobService(cfg.jobs, cfg.base_dir)
    try:
        if args.action == "list":
            for j in service.store.list(None, None, args.phase or None, None, args.last, any_owner=True):
                query = (j.param("QUERY") or "").replace("\n", " ")[:80]
                print(f"{j.job_id}\t{j.service}\t{j.phase}\t{isoformat(j.creation_time)}\t{j.owner_id or '-'}\t{query}")
            return 0
        if not args.job_id:
            print(f"jobs {args.action} needs a job id", file=sys.stderr)
            return 2
        found = service.store.get(args.job_id)
        if found is None:
            print(f"no job {args.job_id}", file=sys.stderr)
            return 1
        if args.action == "show":
            print(
                job_document(
                    found, f"{str(cfg.service.base_url or '').rstrip('/')}/{found.service}/async/{found.job_id}"
                )
            )
        else:
            service.destroy(args.job_id)
            print(f"deleted {args.job_id}")
        return 0
    finally:
        service.close()


def serve(args) -> int:
    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:
        print("vo-gateway serve runs on gunicorn: pip install 'vo-gateway[server]'", file=sys.stderr)
        return 2

    config = os.path.abspath(args.config or os.environ.get("VO_GATEWAY_CONFIG", "config.yaml"))
    import tempfile

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # the workers' metrics, summed (gateway.ops)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="vo-gateway-metrics-")
    app = _app(config)  # validate before forking; after the line above: prometheus-client reads it at import

    from . import gunicorn_conf

    settings = {k: v for k, v in vars(gunicorn_conf).items() if not k.startswith("_")}

    class App(BaseApplication):
        def load_config(self):
            for k, v in {
                **settings,
                "bind": f"{args.host}:{args.port}",
                "workers": args.workers,
                "threads": args.threads,
            }.items():
                self.cfg.set(k, v)

        def load(self):
            return app

    try:
        App().run()
    finally:
        if os.environ["PROMETHEUS_MULTIPROC_DIR"].startswith(tempfile.gettempdir()):
            import shutil

            shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
