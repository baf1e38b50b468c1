"""Accepting a background run vs a synchronous run (SPEC.md section 11: accepted/s >= the sync run's req/s in
the same run, on both executors), like bench/run.sh: gunicorn (2 sync workers) on loopback, loaded with `hey`.

Usage: python bench/background_dispatch.py [N=400] [--seconds 5] [--rounds 3] [--workers 4] [--database-url postgres://...]
       python bench/background_dispatch.py --profile [N=500] [tottime|cumulative]   (in process, cProfile)

For each executor, one gunicorn server with RUNS_EXECUTOR set (and, for `celery`, a real
`celery -A config worker --concurrency=<workers>` on the local Redis), one fresh database, the benchmark App
(input -> one HTTP node with a stored credential -> output) against the reference upstream from
../shared/bench. On that server, --rounds times (medians reported, ratio per round), one after the other:
1. sync: `POST /v1/runs {"input": {}}` at concurrency 8 for --seconds (hey's requests/s, all 200).
2. background: N x `POST /v1/runs {"input": {}, "background": true}` at concurrency 8 (all 202). accepted/s
   is hey's answer rate: how fast the server says 202 *while the executor works* (the thread executor's pool
   runs in the same gunicorn workers and the Celery worker on the same 2 cores, so executing competes with
   accepting for the CPU, and for SQLite's write lock, as it would in a deployment on one machine).
3. completed/s: N / (time from the first background request until all N runs are terminal), before the
   next round's sync window (so no sync window runs beside a backlog).
For Celery a second row, `celery, idle`, measures the accept rate with no worker consuming (the messages
wait in Redis; the worker starts after the accept phase): the cost of accepting alone, as with workers on
other machines. Then a worker drains what those rounds queued (completed/s of the drain).

It owns all its state and touches nothing else on the machine: a Celery queue and Redis key prefix of its
own (deleted key by key at the end, never FLUSHDB), a throwaway SQLite file in /dev/shm per executor, or
with --database-url a PostgreSQL database it creates on that server (`bench_rcp_<pid>_<executor>`) and
drops afterwards.
"""

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from statistics import median

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("SHARED_BENCH") or next(
    (path for path in (os.path.join(HERE, "..", "shared", "bench"), os.path.join(HERE, "..", "..", "shared", "bench"))
     if os.path.isfile(os.path.join(path, "upstream.py"))), os.path.join(HERE, "..", "shared", "bench"))
PY = sys.executable


def _free_port() -> int:
    """A loopback port nobody listens on now (other benchmarks may run on the same machine)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


UPSTREAM_PORT, APP_PORT = _free_port(), _free_port()
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = f"{os.getpid()}-{secrets.token_hex(4)}"
KEY_PREFIX = f"rcp-bench-{RUN_ID}:"
QUEUE = f"rcp-bench-{RUN_ID}"
BASE_ENV = dict(
    DJANGO_SETTINGS_MODULE="config.settings", DEBUG="false", SECURE_SSL_REDIRECT="false",
    ALLOW_PRIVATE_NETWORK_TARGETS="true", LOG_LEVEL="WARNING",
    SECRET_KEY="bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz0123456789",
    FERNET_KEYS="ZGV2LWZlcm5ldC1rZXktbmV2ZXItdXNlLWluLXByb2c=",
    CREDENTIALS_API_TOKEN="bench-credentials-token-0123456789abcdef",
    CELERY_BROKER_URL=REDIS_URL, CELERY_KEY_PREFIX=KEY_PREFIX, CELERY_QUEUE=QUEUE,
)
SYNC_BODY = '{"input": {}}'
BACKGROUND_BODY = '{"input": {}, "background": true}'


def _arg(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def _hey(url: str, key: str, body: str, *args: str) -> tuple[float, dict[str, int]]:
    out = subprocess.run(["hey", *args, "-m", "POST", "-H", f"Authorization: Bearer {key}", "-T", "application/json",
                          "-d", body, url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    codes = {m.group(1): int(m.group(2)) for m in re.finditer(r"\[(\d+)\]\s+(\d+) responses", out)}
    return rps, codes


def _terminal_count(database_url: str) -> int:
    sql = "SELECT count(*) FROM runs_run WHERE status IN ('completed', 'failed', 'canceled')"
    if database_url.startswith("postgres"):
        import psycopg

        with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1)) as conn:
            return conn.execute(sql).fetchone()[0]
    import sqlite3

    with sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=20) as conn:
        return conn.execute(sql).fetchone()[0]


def _statuses(database_url: str) -> str:
    sql = "SELECT status, count(*) FROM runs_run GROUP BY status ORDER BY status"
    if database_url.startswith("postgres"):
        import psycopg

        with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1)) as conn:
            rows = conn.execute(sql).fetchall()
    else:
        import sqlite3

        with sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=20) as conn:
            rows = conn.execute(sql).fetchall()
    return ",".join(f"{status}:{count}" for status, count in rows)


def _wait_terminal(database_url: str, target: int, started: float) -> float:
    while _terminal_count(database_url) < target:
        time.sleep(0.05)
        if time.perf_counter() - started > 600:
            raise SystemExit("runs did not finish within 10 minutes")
    return time.perf_counter() - started


def _worker(env: dict, workers: int) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "-m", "celery", "-A", "config", "worker", f"--concurrency={workers}", "--loglevel=WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def _worker_ready(env: dict) -> None:
    """Until the worker answers a ping (its start-up is not part of any measurement)."""
    code = "from config.celery import app; import sys; sys.exit(0 if app.control.ping(timeout=1.0) else 1)"
    for _ in range(60):
        if subprocess.run([PY, "-c", code], cwd=HERE, env=env, capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    raise SystemExit("the Celery worker did not start")


def _stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def measure(executor: str, n: int, seconds: int, rounds: int, workers: int, database_url: str) -> list[dict]:
    env = {**os.environ, **BASE_ENV, "DATABASE_URL": database_url, "RUNS_EXECUTOR": executor,
           "RUNS_THREAD_WORKERS": str(workers)}
    subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=HERE, env=env, check=True)
    app_id, key = subprocess.check_output(
        [PY, os.path.join(HERE, "bench", "seed_bench.py"), f"http://127.0.0.1:{UPSTREAM_PORT}/", "k-1"], env=env,
    ).decode().split()
    url = f"http://127.0.0.1:{APP_PORT}/apps/{app_id}/v1/runs"
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(PY), "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{APP_PORT}",
         "config.wsgi:application", "--log-level", "warning"], cwd=HERE, env=env, start_new_session=True)
    worker = None
    rows = []
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1)  # noqa: S310 (loopback); 401 without a key
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.1)
        check = urllib.request.Request(url, data=SYNC_BODY.encode(), method="POST", headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(check, timeout=10) as response:  # noqa: S310 (loopback)
            if b'"completed"' not in response.read():
                raise SystemExit("the benchmark run did not complete (is the upstream running?)")
        _hey(url, key, SYNC_BODY, "-n", "200", "-c", "4")  # warm-up
        phases = [("thread", True)] if executor == "thread" else [("celery, idle", False), ("celery", True)]
        for label, consuming in phases:
            if consuming and executor == "celery" and worker is None:
                worker = _worker(env, workers)
                _worker_ready(env)
            row = {"executor": label, "sync": [], "accepted": [], "ratio": [], "completed": [], "sync_codes": {},
                   "codes": {}}
            for _ in range(rounds):
                # Each round: a sync window while no background run is pending, then the background burst.
                sync_rps, sync_codes = _hey(url, key, SYNC_BODY, "-z", f"{seconds}s", "-c", "8")
                done = _terminal_count(database_url)
                started = time.perf_counter()
                accepted_rps, codes = _hey(url, key, BACKGROUND_BODY, "-n", str(n), "-c", "8")
                if consuming:
                    row["completed"].append(n / _wait_terminal(database_url, done + n, started))
                row["sync"].append(sync_rps)
                row["accepted"].append(accepted_rps)
                row["ratio"].append(accepted_rps / sync_rps)
                for total, new in ((row["sync_codes"], sync_codes), (row["codes"], codes)):
                    for code, count in new.items():
                        total[code] = total.get(code, 0) + count
            if not consuming:  # then a worker drains what the idle rounds queued: completed/s of the drain alone
                target = _terminal_count(database_url) + n * rounds  # none of them has been executed yet
                worker = _worker(env, workers)
                _worker_ready(env)
                started = time.perf_counter()
                row["completed"].append(n * rounds / _wait_terminal(database_url, target, started))
            rows.append(row)
        rows[-1]["statuses"] = _statuses(database_url)
    finally:
        _stop(worker)
        _stop(server)
    return rows


def _create_database(server_url: str, executor: str):
    """A fresh PostgreSQL database on the server of `server_url`, and the function that drops it."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"bench_rcp_{os.getpid()}_{executor}"
    conninfo = server_url.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}")), drop


def _delete_own_keys() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{KEY_PREFIX}*", count=1000))
    if keys:
        client.delete(*keys)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 400
    seconds, rounds, workers = int(_arg("--seconds", "5")), int(_arg("--rounds", "3")), int(_arg("--workers", "4"))
    database_url = _arg("--database-url", "")
    if not os.path.isfile(os.path.join(SHARED, "upstream.py")):
        raise SystemExit(f"reference bench not found at {SHARED} (set SHARED_BENCH)")
    upstream = subprocess.Popen([PY, os.path.join(SHARED, "upstream.py"), str(UPSTREAM_PORT), "k-1"])
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
                rows += measure(executor, n, seconds, rounds, workers, url)
            finally:
                drop()
                shutil.rmtree(work, ignore_errors=True)
    finally:
        upstream.terminate()
        _delete_own_keys()
    backend = "postgresql" if database_url.startswith("postgres") else "sqlite"
    print(f"\nbackground accept vs sync run (gunicorn -w 2, hey -c 8), {backend}: medians of {rounds} rounds, each a "
          f"{seconds}s sync window then {n} background runs; {workers} executor workers")
    print(f"{'executor':<14}{'sync req/s':>11}{'accepted/s':>12}{'ratio':>7}{'completed/s':>13}  answers (sync | background)")
    for row in rows:
        answers = (",".join(f"{c}:{k}" for c, k in sorted(row["sync_codes"].items())) + " | "
                   + ",".join(f"{c}:{k}" for c, k in sorted(row["codes"].items())))
        print(f"{row['executor']:<14}{median(row['sync']):>11.1f}{median(row['accepted']):>12.1f}"
              f"{median(row['ratio']):>7.2f}{median(row['completed']):>13.1f}  {answers}")
    print("ratio = median of each round's accepted/s over the same round's sync req/s; per round: "
          + "; ".join(f"{r['executor']}: " + " ".join(f"{x:.2f}" for x in r["ratio"]) for r in rows))
    print("final run statuses: " + "; ".join(f"{r['executor']}: {r['statuses']}" for r in rows if "statuses" in r))
    print("budget (SPEC 11): accepted/s >= sync req/s (ratio >= 1) on both executors")


def profile() -> None:
    """cProfile of N in-process accepts (Django's handler, no HTTP server; Celery executor with no worker, so
    only accepting is measured), and the SQL statements of one accept."""
    import cProfile
    import pstats

    n = next((int(a) for a in sys.argv[1:] if a.isdigit()), 500)
    work = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)  # noqa: S108
    os.environ.update(BASE_ENV, DATABASE_URL=f"sqlite:///{work}/profile.sqlite3",
                      RUNS_EXECUTOR=_arg("--executor", "celery"))
    sys.path.insert(0, HERE)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    try:
        call_command("migrate", verbosity=0)
        app_id, key = subprocess.check_output(
            [PY, os.path.join(HERE, "bench", "seed_bench.py"), "http://127.0.0.1:9/", "k-1"], env=os.environ,
        ).decode().split()
        client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")

        def one():
            response = client.post(f"/apps/{app_id}/v1/runs", {"input": {}, "background": True},
                                   content_type="application/json")
            assert response.status_code == 202, response.content

        for _ in range(20):
            one()
        with CaptureQueriesContext(connection) as captured:
            one()
        print(f"statements of one accept: {len(captured.captured_queries)}")
        for query in captured.captured_queries:
            print("  ", query["sql"][:160])
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for _ in range(n):
            one()
        profiler.disable()
        print(f"{n} accepts in process (profiled): {n / (time.perf_counter() - started):.1f}/s")
        order = sys.argv[-1] if sys.argv[-1] in ("tottime", "cumulative") else "cumulative"
        stats = pstats.Stats(profiler).sort_stats(order)
        stats.print_stats(*([_arg("--filter", "")] if "--filter" in sys.argv else []), 40)
    finally:
        _delete_own_keys()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    profile() if "--profile" in sys.argv else main()
