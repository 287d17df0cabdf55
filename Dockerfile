# vo-gateway: core + first-party plugins, served by gunicorn -k gthread.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VO_GATEWAY_CONFIG=/app/config.yaml
WORKDIR /app

COPY pyproject.toml README.md constraints.txt ./
COPY gateway ./gateway
COPY plugins ./plugins
RUN pip install --no-cache-dir -c constraints.txt ".[postgresql,server]" ./plugins/embedded ./plugins/ivoa ./plugins/skymapper ./plugins/mast ./plugins/hsc ./plugins/sdss ./plugins/hats

COPY config.yaml ./
COPY configs ./configs
COPY data ./data

# UWS job store and results (jobs.store / jobs.results_dir); mount shared storage here, or point
# jobs.store at PostgreSQL (docs/deployment.md).  Workers: same image, CMD ["vo-gateway", "worker"].
RUN useradd --system --home-dir /app gateway && mkdir -p /app/var && chown gateway /app/var
VOLUME /app/var
USER gateway
EXPOSE 8000
# /healthz: the process answers; /readyz adds the config and the job store (docs/deployment.md)
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"]
# vo-gateway serve checks the configuration before it starts gunicorn (same settings as gateway.gunicorn_conf)
CMD ["vo-gateway", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--threads", "8"]
