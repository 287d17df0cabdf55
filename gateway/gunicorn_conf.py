"""gunicorn settings of the service (``gunicorn -c python:gateway.gunicorn_conf gateway.wsgi:app``;
``vo-gateway serve`` uses the same).  ``limit_request_line = 0``: a long ADQL query sent by GET
is the application's to judge, so it gets a DALI error document naming the limit
(``service.max_query_length``) instead of gunicorn's HTML 414 page.  No control socket: gunicorn's
default ``~/.gunicorn/gunicorn.ctl`` would be shared by every instance on the host."""

worker_class = "gthread"
timeout = 300
keepalive = 5
limit_request_line = 0
control_socket_disable = True


def worker_exit(server, worker):
    """Stop the job service, then end the worker process at once.  Its DuckDB connections were
    opened before the fork (``vo-gateway serve`` builds the app once, to check the config):
    closing or finalising them in the child crashes it (SIGSEGV) and prints nanobind "leaked"
    lines, after the work is done; the OS frees them.  Output is flushed first."""
    import logging
    import os
    import sys

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
    gw = getattr(worker.wsgi, "extensions", {}).get("vo_gateway") if worker.wsgi else None
    if gw is not None:
        gw.jobs.close()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
