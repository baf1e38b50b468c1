# The platform's image: the README's "Production" steps, in the same order, as a non-root user.
# Linted by hadolint in `make lint`; tests/ops/test_deploy_files.py checks that these steps are the
# README's. Not built on the development machine (no container engine runs there).
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# No system libpq: psycopg-binary (requirements.txt) ships its own.

# A home of its own: gunicorn keeps its control socket under ~/.gunicorn.
RUN groupadd --gid 10001 app \
    && useradd --create-home --home-dir /home/app --uid 10001 --gid 10001 --shell /usr/sbin/nologin app

WORKDIR /app
COPY requirements.txt ./
RUN python3 -m venv .venv \
    && .venv/bin/pip install -r requirements.txt

COPY . .
# The settings refuse to load with DEBUG=false and no secrets; collectstatic reads neither a secret nor the
# database, so these build-only values never meet one (the real ones come from the environment at start).
RUN DEBUG=false SECRET_KEY=build-only-collectstatic-never-used-at-run-time-0123456789 \
    FERNET_KEYS=build-only-not-a-key CREDENTIALS_API_TOKEN=build-only-collectstatic-never-used \
    .venv/bin/python manage.py collectstatic --noinput \
    && mkdir -p var/media \
    && chown 10001:10001 var/media

# The embedded rate-limit cache (without CACHE_URL): the app directory is not writable by the app user.
ENV CACHE_SQLITE_PATH=/tmp/platform-cache.sqlite3
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/app/.venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD [".venv/bin/gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000"]
