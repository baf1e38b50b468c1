"""Where a sync run's time goes on PostgreSQL, per connection option: the client's CPU per run (this process:
Django, psycopg, the engine) and the server's time per run (`pg_stat_database.active_time` of the run's own
database: parsing, planning, executing, committing), in process, no HTTP server in front. Both are counts of
work rather than wall time under load, so they hold still on a busy machine, unlike req/s.

Usage: python bench/pg_server_time.py [N=400] [ROUNDS=3]
Variants run in turn, round after round, each in a fresh process on a fresh database; the table shows medians.
Needs PostgreSQL on 127.0.0.1:5432 (postgres, trust; PG_ADMIN_URL overrides) and ../shared/bench (SHARED_BENCH).
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import time

here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
admin_url = os.environ.get("PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
base_url = admin_url.rsplit("/", 1)[0]

VARIANTS = {
    "client-side binding (Django's default)": {"DATABASE_PREPARE_THRESHOLD": ""},
    "server-side binding, prepared after 5": {"DATABASE_PREPARE_THRESHOLD": "5"},
}


def measure(n: int) -> None:
    """Child: one variant on the database in DATABASE_URL; prints one JSON line."""
    sys.path.insert(0, here)
    import django

    django.setup()
    import psycopg
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    call_command("migrate", verbosity=0)
    app_id, key = subprocess.check_output(
        [sys.executable, os.path.join(here, "bench", "seed_bench.py"), os.environ["BENCH_UPSTREAM"], "k-1"],
        env=os.environ).decode().split()
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")

    def one():
        response = client.post(f"/apps/{app_id}/v1/runs", {"input": {}}, content_type="application/json")
        assert response.status_code == 200 and b'"completed"' in response.content, response.content

    database = connection.settings_dict["NAME"]

    def active_ms() -> float:
        connection.close()  # a backend reports its statistics when its session ends
        time.sleep(1.2)
        with psycopg.connect(f"{base_url}/{database}") as stats:
            stats.execute("SELECT pg_stat_clear_snapshot()")
            return stats.execute("SELECT active_time FROM pg_stat_database WHERE datname = %s",
                                 [database]).fetchone()[0]

    for _ in range(30):
        one()
    before = active_ms()
    wall, cpu = [], []
    for _ in range(n):
        start, start_cpu = time.perf_counter(), time.process_time()
        one()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    after = active_ms()
    # The statistics connection's own statements count too; they are microseconds against n runs.
    print(json.dumps({"wall_p50": statistics.median(wall), "cpu_p50": statistics.median(cpu),
                      "server_per_run": (after - before) / n}))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    shared = os.environ.get("SHARED_BENCH", os.path.join(here, "..", "shared", "bench"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    upstream = subprocess.Popen([sys.executable, os.path.join(shared, "upstream.py"), str(port), "k-1"])
    import psycopg

    results: dict[str, list[dict]] = {label: [] for label in VARIANTS}
    try:
        time.sleep(0.5)
        for round_number in range(rounds):
            for index, (label, variant) in enumerate(VARIANTS.items()):
                database = f"bench_pgtime_{os.getpid()}_{round_number}_{index}"
                with psycopg.connect(admin_url, autocommit=True) as admin:
                    admin.execute(f"CREATE DATABASE {database}")
                try:
                    env = dict(os.environ, **variant, DJANGO_SETTINGS_MODULE="config.settings", DEBUG="false",
                               SECURE_SSL_REDIRECT="false", ALLOW_PRIVATE_NETWORK_TARGETS="true",
                               LOG_LEVEL="WARNING", CONN_HEALTH_CHECKS="true",
                               SECRET_KEY="bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz0123456789",
                               FERNET_KEYS="ZGV2LWZlcm5ldC1rZXktbmV2ZXItdXNlLWluLXByb2c=",
                               CREDENTIALS_API_TOKEN="bench-credentials-token-0123456789abcdef",
                               RATE_LIMIT_RUNS="1000000000/minute", DATABASE_URL=f"{base_url}/{database}",
                               CACHE_SQLITE_PATH=f"/tmp/{database}.cache.sqlite3",  # noqa: S108 (bench scratch)
                               BENCH_UPSTREAM=f"http://127.0.0.1:{port}/")
                    output = subprocess.check_output([sys.executable, __file__, "--child", str(n)], env=env, cwd=here)
                    results[label].append(json.loads(output.decode().strip().splitlines()[-1]))
                finally:
                    with psycopg.connect(admin_url, autocommit=True) as admin:
                        admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    finally:
        upstream.terminate()

    print(f"\nsync run on PostgreSQL, in process, {n} runs x {rounds} rounds (medians)")
    print(f"{'connection option':42} {'client CPU ms/run':>18} {'server ms/run':>14} {'wall p50 ms':>12}")
    for label, rows in results.items():
        print(f"{label:42} {statistics.median(r['cpu_p50'] for r in rows):18.2f} "
              f"{statistics.median(r['server_per_run'] for r in rows):14.2f} "
              f"{statistics.median(r['wall_p50'] for r in rows):12.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        measure(int(sys.argv[2]))
    else:
        main()
