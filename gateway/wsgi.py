"""WSGI entry point for gunicorn: ``gunicorn -k gthread 'gateway.wsgi:app'``.
The config file is ``$VO_GATEWAY_CONFIG`` (default ``./config.yaml``)."""

from .app import create_app

app = create_app()
