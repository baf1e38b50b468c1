"""`GET /v1/requirements/status` at scale (SPEC.md section 11: p95 <= 5 ms on PostgreSQL with 1,000,000
end-user links over 100,000 users).

Usage: .venv/bin/python bench/status_scale.py [--users 100000] [--links-per-user 10] [--requirements 10]
                                              [--requests 2000] [--no-hey] [--server postgres://postgres@127.0.0.1:5432/postgres]

It creates its own PostgreSQL database on the server (`bench_status_<pid>`), migrates it, and drops it at the
end, also on error or Ctrl-C (the server's other databases are not touched). The few App, workflow,
requirement and access-key rows go through the services (the ORM); the users' Connection rows (one per link,
all sharing one encrypted config copied as it is) and their EndUserLink rows are bulk-loaded with COPY, then
ANALYZEd. One user in ten has an expired connection on one requirement, and one request in ten asks about a
user with no link at all, so the answers are a mix of complete and incomplete.

Measured: random users through Django's handler in process (django.test.Client with the access key), after a
warm-up; then, if Debian's `hey` is installed, the same endpoint through `gunicorn -w 2` on loopback (one user
per hey run, hey cannot vary the URL) at concurrency 1 and 8. Printed: p50/p95/p99 ms and requests/s, a
`SELECT 1` floor and the load average (on a shared machine the wall times are mostly waiting for a CPU), this
process's CPU time per request, the SQL statements of one request and the EXPLAIN (ANALYZE, BUFFERS) plan of
each (a sequential scan on the links or connections table is called out). `--profile` adds a cProfile.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
import warnings
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
P95_BUDGET_MS = 5.0
BIG_TABLE_ROWS = 10_000  # a sequential scan on a table this large is a missing index, not a planner choice
ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "false", "SECURE_SSL_REDIRECT": "false",
    "LOG_LEVEL": "WARNING", "SECRET_KEY": "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz0123456789",
    "FERNET_KEYS": "ZGV2LWZlcm5ldC1rZXktbmV2ZXItdXNlLWluLXByb2c=",
    "CREDENTIALS_API_TOKEN": "bench-credentials-token-0123456789abcdef",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--links-per-user", type=int, default=10)
    parser.add_argument("--requirements", type=int, default=10, help="requirements of the deployed version")
    parser.add_argument("--requests", type=int, default=2000, help="measured in-process requests")
    parser.add_argument("--no-hey", action="store_true", help="skip the gunicorn + hey measurement")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the in-process requests")
    parser.add_argument("--server", default=os.environ.get("BENCH_PG_SERVER", "postgres://postgres@127.0.0.1:5432/postgres"),
                        help="PostgreSQL server to create the throwaway database on")
    args = parser.parse_args()
    if args.links_per_user > args.requirements:
        parser.error("--links-per-user cannot exceed --requirements (one link per user and requirement)")
    return args


def _admin(server_url: str):
    import psycopg

    return psycopg.connect(server_url.replace("postgres://", "postgresql://", 1), autocommit=True)


def create_database(server_url: str) -> tuple[str, object]:
    """A fresh database on the server, its URL, and the function that drops it."""
    name = f"bench_status_{os.getpid()}"
    with _admin(server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with _admin(server_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}")), drop


# --- seeding -------------------------------------------------------------------------------------------


def seed_app(n_requirements: int):
    """Organization, project, workflow with `n_requirements` requirements (one HTTP node each), a deployed
    version, the App and an access key: the ORM, through the services, as the product creates them."""
    from apps.accounts.services import access_key_create, project_get_or_create
    from apps.deployments.services import app_create, deploy
    from apps.workflows.services import requirement_create, workflow_create, workflow_version_create

    project = project_get_or_create(organization_name="Bench", project_name="Status")
    workflow = workflow_create(project=project, name="status-scale")
    requirements = [
        requirement_create(workflow=workflow, name=f"account-{i:02d}", title=f"Account {i:02d}",
                           spec={"connection_type": "http_api_key"})
        for i in range(n_requirements)
    ]
    nodes = [{"id": "input", "type": "input", "fields": {}}]
    previous = "input"
    for i, requirement in enumerate(requirements):
        nodes.append({"id": f"call{i}", "type": "http", "depends_on": [previous],
                      "connection": {"requirement": str(requirement.id)},
                      "config": {"method": "GET", "url": f"https://api{i}.example.com/"}})
        previous = f"call{i}"
    nodes.append({"id": "output", "type": "output", "depends_on": [previous], "fields": {"ok": "yes"}})
    version = workflow_version_create(workflow=workflow, definition={"nodes": nodes})
    app = app_create(project=project, name="status-scale")
    deploy(app=app, version=version)
    _, raw_key = access_key_create(organization=project.organization, project=project, name="bench")
    return project, app, requirements, raw_key


def shared_ciphertext(project, app) -> str:
    """One end-user connection saved through the ORM; its stored ciphertext is copied into every bulk row."""
    from django.db import connection as db

    from apps.connections.models import Connection

    sample = Connection.objects.create(project=project, name="sample", type="http_api_key", app=app, user_id="sample",
                                       config={"url": "https://api.example.com/", "api_key": "bench-user-api-key"})
    with db.cursor() as cursor:
        cursor.execute("SELECT config FROM connections_connection WHERE id = %s", [sample.id])
        (ciphertext,) = cursor.fetchone()
    sample.delete()
    return ciphertext


def user_name(index: int) -> str:
    return f"user-{index:07d}"


def bulk_load(*, project, app, requirements, users: int, links_per_user: int) -> float:
    """COPY one Connection and one EndUserLink per (user, requirement), then ANALYZE. Returns the seconds.

    Rows go in requirement by requirement (all users' first link, then all second links, ...), so one
    user's links and connections lie on different pages, as links made over time do. Foreign-key triggers
    are skipped while loading (session_replication_role = replica: every key written here exists by
    construction); the unique and other indexes are maintained as in production."""
    from django.db import connection as db

    ciphertext = shared_ciphertext(project, app)
    now = datetime.now(UTC)
    # Distinct IDs from a counter: uuid4-shaped prefixes with the low 40 bits free for the row number.
    connection_base = uuid.uuid4().int >> 40 << 40
    link_base = uuid.uuid4().int >> 40 << 40

    def rows():
        k = 0
        for j in range(links_per_user):
            for u in range(users):
                # User u links links_per_user requirements, starting at a per-user offset.
                yield k, u, j, requirements[(u + j) % len(requirements)]
                k += 1

    started = time.perf_counter()
    db.ensure_connection()
    raw = db.connection  # the psycopg 3 connection under Django's (autocommit, like Django's)
    with raw.transaction(), raw.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        with cursor.copy(
            "COPY connections_connection (id, created_at, updated_at, project_id, name, type, config, status, app_id,"
            " user_id, provider_id, expires_at, created_by, updated_by) FROM STDIN"
        ) as copy:
            for k, u, j, requirement in rows():
                user = user_name(u)
                status = "expired" if (u % 10 == 0 and j == 0) else "active"  # one user in ten is incomplete
                copy.write_row((uuid.UUID(int=connection_base + k), now, now, project.id, f"{user} · {requirement.name}",
                                "http_api_key", ciphertext, status, app.id, user, None, None, "", ""))
        with cursor.copy(
            "COPY connect_enduserlink (id, created_at, updated_at, app_id, user_id, requirement_id, connection_id)"
            " FROM STDIN"
        ) as copy:
            for k, u, _, requirement in rows():
                copy.write_row((uuid.UUID(int=link_base + k), now, now, app.id, user_name(u), requirement.id,
                                uuid.UUID(int=connection_base + k)))
    with raw.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE connections_connection")  # as autovacuum would, some time after the load
        cursor.execute("VACUUM ANALYZE connect_enduserlink")
    return time.perf_counter() - started


# --- measuring -----------------------------------------------------------------------------------------


def percentiles(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "mean": statistics.fmean(ordered)}


def random_user(rng: random.Random, users: int) -> str:
    # One request in ten asks about a user who never linked anything.
    return f"nobody-{rng.randrange(10**9)}" if rng.random() < 0.1 else user_name(rng.randrange(users))


def measure_in_process(*, app_id, key: str, users: int, n: int) -> dict:
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    path = f"/apps/{app_id}/v1/requirements/status"
    rng = random.Random(11)
    for _ in range(200):  # warm-up: imports, the connection, the key's last_used_at write, PG buffers
        assert client.get(path, {"user_id": random_user(rng, users)}).status_code == 200
    samples, statuses = [], {"complete": 0, "incomplete": 0}
    cpu_started = time.process_time()
    started = time.perf_counter()
    for _ in range(n):
        user = random_user(rng, users)
        t0 = time.perf_counter()
        response = client.get(path, {"user_id": user})
        samples.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.content
        statuses[response.json()["status"]] += 1
    elapsed = time.perf_counter() - started
    cpu_ms = (time.process_time() - cpu_started) / n * 1000  # this process only (PostgreSQL's backend apart)
    return {**percentiles(samples), "rps": n / elapsed, "n": n, "statuses": statuses, "cpu_ms": cpu_ms}


def measure_round_trip(n: int) -> dict:
    """`SELECT 1` through Django's cursor: the floor one statement costs on this machine, right now."""
    from django.db import connection as db

    samples = []
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        with db.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        samples.append((time.perf_counter() - t0) * 1000)
    return {**percentiles(samples), "rps": n / (time.perf_counter() - started), "n": n}


def capture_statements(*, app_id, key: str, user: str) -> tuple[list[tuple[str, object]], int, dict]:
    """The SQL statements of one warm request (with their parameters), the statement count that
    CaptureQueriesContext sees, and the answer."""
    from django.db import connection as db
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    path = f"/apps/{app_id}/v1/requirements/status"
    client.get(path, {"user_id": user})  # warm
    statements: list[tuple[str, object]] = []

    def keep(execute, sql, params, many, context):
        statements.append((sql, params))
        return execute(sql, params, many, context)

    with CaptureQueriesContext(db) as captured, db.execute_wrapper(keep):
        response = client.get(path, {"user_id": user})
    assert response.status_code == 200, response.content
    return statements, len(captured.captured_queries), response.json()


def explain(statements: list[tuple[str, object]]) -> list[tuple[str, str, list[str]]]:
    """EXPLAIN (ANALYZE, BUFFERS) each statement with its parameters; writes are rolled back."""
    from django.db import connection as db
    from django.db import transaction

    from apps.connect.models import EndUserLink
    from apps.connections.models import Connection

    big = {EndUserLink._meta.db_table, Connection._meta.db_table}
    out = []
    for sql, params in statements:
        if sql.strip().upper().startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK", "SET")):
            continue
        try:
            with transaction.atomic():
                with db.cursor() as cursor:
                    cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
                    plan = "\n".join(row[0] for row in cursor.fetchall())
                transaction.set_rollback(True)  # never keep what an EXPLAIN ANALYZE of a write did
        except Exception as exc:  # noqa: BLE001 - report, keep going
            plan = f"(EXPLAIN failed: {exc})"
        seq_big = [t for t in re.findall(r"Seq Scan on (\w+)", plan) if t in big]
        out.append((sql, plan, seq_big))
    return out


# --- gunicorn + hey ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hey_stats(text: str) -> dict:
    def latency(pct: int) -> float:
        match = re.search(rf"\b{pct}% in ([\d.]+) secs", text)
        return float(match.group(1)) * 1000 if match else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", text))
    return {"p50": latency(50), "p95": latency(95), "p99": latency(99), "rps": float(rps.group(1)) if rps else 0.0,
            "codes": codes}


def measure_hey(*, app_id, key: str, database_url: str, users: int, n: int) -> list[tuple[str, dict]]:
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    port = _free_port()
    env = {**os.environ, **ENV, "DATABASE_URL": database_url, "PYTHONWARNINGS": "ignore:No directory at"}
    server = subprocess.Popen(
        [gunicorn, "-w", "2", "-b", f"127.0.0.1:{port}", "config.wsgi:application", "--log-level", "warning"],
        cwd=HERE, env=env, start_new_session=True,
    )
    rows = []
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        url = f"{base}/apps/{app_id}/v1/requirements/status?user_id={user_name(users // 2 + 1)}"
        auth = ["-H", f"Authorization: Bearer {key}"]
        subprocess.run(["hey", "-n", "200", "-c", "2", *auth, url], check=True, capture_output=True)  # warm both workers
        for concurrency in (1, 8):
            out = subprocess.run(["hey", "-n", str(n), "-c", str(concurrency), *auth, url],
                                 check=True, capture_output=True, text=True).stdout
            rows.append((f"gunicorn -w 2 + hey, c{concurrency} (one user)", _hey_stats(out)))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return rows


# --- main ----------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, database_url: str) -> None:
    os.environ.update(ENV, DATABASE_URL=database_url)
    sys.path.insert(0, HERE)
    import django

    warnings.filterwarnings("ignore", message="No directory at")  # no collectstatic here
    django.setup()
    from django.core.management import call_command
    from django.db import connection as db

    call_command("migrate", verbosity=0)
    project, app, requirements, key = seed_app(args.requirements)
    total = args.users * args.links_per_user
    load_s = bulk_load(project=project, app=app, requirements=requirements, users=args.users,
                       links_per_user=args.links_per_user)
    with db.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT user_id) FROM connect_enduserlink")
        links, distinct_users = cursor.fetchone()
    assert links == total, (links, total)

    statements, count, answer = capture_statements(app_id=app.id, key=key, user=user_name(0))
    plans = explain(statements)
    round_trip = measure_round_trip(args.requests)
    inproc = measure_in_process(app_id=app.id, key=key, users=args.users, n=args.requests)
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(measure_in_process, app_id=app.id, key=key, users=args.users, n=args.requests)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(60)
    hey_rows = []
    if not args.no_hey and shutil.which("hey"):
        hey_rows = measure_hey(app_id=app.id, key=key, database_url=database_url, users=args.users, n=args.requests)
    db.close()

    print(f"\nGET /v1/requirements/status on PostgreSQL: {links:,} end-user links over {distinct_users:,} users, "
          f"{len(requirements)} requirements in the deployed version (COPY + ANALYZE in {load_s:.0f} s)")
    print(f"SQL statements per request (warm, CaptureQueriesContext): {count}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"\n{'measurement':<44}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'req/s':>9}")
    print(f"{'in process, django.test.Client, random users':<44}{inproc['n']:>6}{inproc['p50']:>9.2f}"
          f"{inproc['p95']:>9.2f}{inproc['p99']:>9.2f}{inproc['rps']:>9.0f}")
    print(f"{'floor: SELECT 1 through Django cursor':<44}{round_trip['n']:>6}{round_trip['p50']:>9.2f}"
          f"{round_trip['p95']:>9.2f}{round_trip['p99']:>9.2f}{round_trip['rps']:>9.0f}")
    for name, row in hey_rows:
        print(f"{name:<44}{args.requests:>6}{row['p50']:>9.2f}{row['p95']:>9.2f}{row['p99']:>9.2f}{row['rps']:>9.0f}"
              + ("" if set(row["codes"]) == {"200"} else f"  non-200: {row['codes']}"))
    print(f"CPU time of this process per in-process request: {inproc['cpu_ms']:.2f} ms (mean; far less "
          "sensitive to the machine's load than wall time)")
    print(f"answers (in process): {inproc['statuses']}; user-0000000 answers {answer['status']} "
          f"({len(answer['unsatisfied'])} unsatisfied)")
    verdict = "within" if inproc["p95"] <= P95_BUDGET_MS else "OVER"
    print(f"budget (SPEC 11): p95 <= {P95_BUDGET_MS:.0f} ms in process: {verdict}")
    seq = sorted({t for _, _, tables in plans for t in tables})
    print("sequential scans on the large tables: " + (", ".join(seq) if seq else "none"))
    for i, (sql, plan, _) in enumerate(plans, 1):
        print(f"\n-- statement {i}: {sql}\n{plan}")


def main() -> None:
    args = parse_args()
    # A terminated run still drops its database: SIGTERM unwinds like Ctrl-C (through the finally below).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    database_url, drop = create_database(args.server)
    try:
        run(args, database_url)
    finally:
        drop()  # WITH (FORCE): this process's own connection, if still open, is closed by the server


if __name__ == "__main__":
    main()
