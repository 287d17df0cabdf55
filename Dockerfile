# vo-gateway: core + first-party plugins, served by gunicorn -k gthread.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VO_GATEWAY_CONFIG=/app/config.yaml
WORKDIR /app

COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY plugins ./plugins
RUN pip install --no-cache-dir ".[postgresql]" ./plugins/embedded ./plugins/ivoa ./plugins/skymapper ./plugins/mast ./plugins/hsc

COPY config.yaml ./
COPY data ./data

# UWS job store and results (jobs.store / jobs.results_dir); mount shared storage here, or point
# jobs.store at PostgreSQL (docs/deployment.md).  Workers: same image, CMD ["vo-gateway", "worker"].
RUN useradd --system --home-dir /app gateway && mkdir -p /app/var && chown gateway /app/var
VOLUME /app/var
USER gateway
EXPOSE 8000
CMD ["gunicorn", "-c", "python:gateway.gunicorn_conf", "--workers", "2", "--threads", "8", "--bind", "0.0.0.0:8000", "gateway.wsgi:app"]
