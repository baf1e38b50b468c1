"""Dispatch rate of background runs on each executor: how many `POST /v1/runs {"background": true}` are
accepted per second (202, persisted `created`, queued), and how many runs complete per second.

Usage: python bench/background_dispatch.py [N=300] [--workers 4] [--database-url postgres://...]

Each executor runs in a fresh child process with its own database (SQLite in /dev/shm by default) and
the benchmark App (input -> one HTTP node with a stored credential -> output) against the reference
upstream from ../shared/bench. Requests go through Django's handler in process (no HTTP server in
front), one at a time. `thread`: the web process's pool of --workers threads. `celery`: a real
`celery -A config worker --concurrency=<workers>` on the local Redis.

It owns all its state and touches nothing else on the machine: a Celery queue and Redis key prefix of its
own (CELERY_QUEUE / CELERY_KEY_PREFIX, deleted key by key at the end, never FLUSHDB), and a throwaway
database per executor: a temporary SQLite file, or with --database-url a PostgreSQL database it creates
on that server (`bench_rcp_<pid>_<executor>`) and drops afterwards (the given database itself is not used).
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("SHARED_BENCH", os.path.join(HERE, "..", "shared", "bench"))
UPSTREAM_PORT = 18192
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# This run's own queue and key prefix (inherited by the child processes and the Celery worker).
RUN_ID = os.environ.setdefault("BENCH_RUN_ID", f"{os.getpid()}-{secrets.token_hex(4)}")
KEY_PREFIX = f"rcp-bench-{RUN_ID}:"
QUEUE = f"rcp-bench-{RUN_ID}"


def _arg(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def child(executor: str, n: int, workers: int, database_url: str) -> dict:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings", DEBUG="false", SECURE_SSL_REDIRECT="false",
        ALLOW_PRIVATE_NETWORK_TARGETS="true", LOG_LEVEL="WARNING",
        SECRET_KEY="bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz0123456789",
        FERNET_KEYS="ZGV2LWZlcm5ldC1rZXktbmV2ZXItdXNlLWluLXByb2c=",
        CREDENTIALS_API_TOKEN="bench-credentials-token-0123456789abcdef",
        DATABASE_URL=database_url, RUNS_EXECUTOR=executor, RUNS_THREAD_WORKERS=str(workers),
        CELERY_BROKER_URL=REDIS_URL, CELERY_KEY_PREFIX=KEY_PREFIX, CELERY_QUEUE=QUEUE,
        RATE_LIMIT_RUNS="1000000000/minute",  # counted as in production, never reached
    )
    sys.path.insert(0, HERE)
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from apps.runs.models import Run

    call_command("migrate", verbosity=0)  # a database of its own, created empty by main()
    app_id, key = subprocess.check_output(
        [sys.executable, os.path.join(HERE, "bench", "seed_bench.py"), f"http://127.0.0.1:{UPSTREAM_PORT}/", "k-1"],
        env=os.environ,
    ).decode().split()
    worker = None
    if executor == "celery":
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", f"--concurrency={workers}", "--loglevel=WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=HERE, env=os.environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        time.sleep(4)  # worker start-up is not part of the measurement
    try:
        client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
        body = {"input": {}, "background": True}
        started = time.perf_counter()
        for _ in range(n):
            response = client.post(f"/apps/{app_id}/v1/runs", body, content_type="application/json")
            assert response.status_code == 202, response.content
        accepted = time.perf_counter() - started
        while Run.objects.filter(status__in=Run.TERMINAL).count() < n:
            time.sleep(0.02)
            if time.perf_counter() - started > 600:
                raise SystemExit("runs did not finish within 10 minutes")
        completed = time.perf_counter() - started
        statuses = sorted(set(Run.objects.values_list("status", flat=True)))
    finally:
        if worker is not None:
            os.killpg(worker.pid, 15)
            worker.wait(timeout=30)
    return {"executor": executor, "n": n, "accepted_per_s": n / accepted, "completed_per_s": n / completed,
            "accept_ms": accepted / n * 1000, "statuses": statuses}


def _delete_own_keys() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{KEY_PREFIX}*", count=1000))
    if keys:
        client.delete(*keys)


def _admin_connection(server_url: str):
    import psycopg

    conninfo = server_url.replace("postgres://", "postgresql://", 1)
    return psycopg.connect(conninfo, autocommit=True)


def _create_database(server_url: str, executor: str) -> tuple[str, object]:
    """A fresh PostgreSQL database on the server of `server_url`, and the function that drops it."""
    from urllib.parse import urlsplit, urlunsplit

    name = f"bench_rcp_{os.getpid()}_{executor}"
    with _admin_connection(server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server_url)

    def drop() -> None:
        with _admin_connection(server_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunsplit(parts._replace(path=f"/{name}")), drop


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 300
    workers = int(_arg("--workers", "4"))
    database_url = _arg("--database-url", "")
    upstream = subprocess.Popen([sys.executable, os.path.join(SHARED, "upstream.py"), str(UPSTREAM_PORT), "k-1"])
    rows = []
    try:
        time.sleep(0.3)
        for executor in ("thread", "celery"):
            work = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)  # noqa: S108
            if database_url:
                url, drop = _create_database(database_url, executor)
            else:
                url, drop = f"sqlite:///{work}/bench-{executor}.sqlite3", lambda: None
            try:
                out = subprocess.check_output([sys.executable, __file__, "--child", executor, str(n), str(workers), url])
            finally:
                drop()
                shutil.rmtree(work, ignore_errors=True)
            rows.append(json.loads(out.decode().strip().splitlines()[-1]))
    finally:
        upstream.terminate()
        _delete_own_keys()
    backend = "postgresql" if database_url.startswith("postgres") else "sqlite"
    print(f"background dispatch, {n} runs, {workers} workers, {backend}")
    print(f"{'executor':<10}{'accepted/s':>12}{'ms/accept':>11}{'completed/s':>13}  statuses")
    for row in rows:
        print(f"{row['executor']:<10}{row['accepted_per_s']:>12.1f}{row['accept_ms']:>11.2f}{row['completed_per_s']:>13.1f}"
              f"  {','.join(row['statuses'])}")


if __name__ == "__main__":
    if "--child" in sys.argv:
        i = sys.argv.index("--child")
        executor, n, workers, url = sys.argv[i + 1], int(sys.argv[i + 2]), int(sys.argv[i + 3]), sys.argv[i + 4]
        print(json.dumps(child(executor, n, workers, url)))
    else:
        main()
