"""The proxy's added latency over a direct call to the same loopback upstream, side by side in one run.

One command (from the project root, the shared venv's python): `python bench/proxy.py [--requests N]`.
It starts the loopback upstream (bench/slow_upstream.py, delay 0: checks `Authorization: Bearer KEY`), migrates
and seeds a fresh SQLite database (an App whose version references an http_api_key connection to the upstream),
starts gunicorn with ./gunicorn.conf.py (gthread x8, 2 workers, production settings), then measures with `hey`,
alternating direct and proxied rounds (3 each) so drift hits both alike:
- direct:  GET upstream/ping with the key, as the App's backend would call the API itself;
- proxied: GET /apps/<id>/v1/proxy/connections/<connection id>/ping with an access key (resolution, audit row,
  masking and streaming included).
Prints p50/p99 at concurrency 1 and req/s at concurrency 8, medians of the rounds, and the ratios.
`DATABASE_URL=postgres://...` measures on PostgreSQL instead (the database must exist and be empty).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(upstream: str, key: str) -> None:
    """Run in a child process with the bench's environment: prints `<app_id> <access key> <connection id>`."""
    import django

    sys.path.insert(0, str(ROOT))
    django.setup()
    from apps.accounts.services import access_key_create, project_get_or_create
    from apps.connections.services import connection_create
    from apps.deployments.services import app_create, deploy
    from apps.workflows.services import workflow_create, workflow_version_create

    project = project_get_or_create(organization_name="Bench", project_name="Proxy")
    connection = connection_create(project=project, name="proxy-upstream", type="http_api_key",
                                   config={"url": upstream, "api_key": key}, actor="bench")
    workflow = workflow_create(project=project, name="proxy-bench")
    version = workflow_version_create(workflow=workflow, definition={"nodes": [
        {"id": "input", "type": "input", "fields": {}},
        {"id": "call", "type": "http", "depends_on": ["input"], "connection": {"id": str(connection.id)},
         "config": {"method": "GET", "url": f"{upstream}/ping"}},
        {"id": "output", "type": "output", "depends_on": ["call"], "fields": {"result": "{{ nodes.call.output.body }}"}},
    ]}, actor="bench")
    app = app_create(project=project, name="proxy-bench")
    deploy(app=app, version=version, actor="bench")
    _, raw = access_key_create(organization=project.organization, project=project, name="proxy-bench")
    print(app.id, raw, connection.id)


def hey(url: str, *, n: int, c: int, headers: dict[str, str], host: str | None = None) -> dict[str, float]:
    command = ["hey", "-n", str(n), "-c", str(c), "-disable-compression"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if host:
        command += ["-host", host]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    if set(codes) != {"200"}:
        raise SystemExit(f"non-200 answers from {url}: {codes}\n{out}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
        "p50": float(re.search(r"50% in ([\d.]+) secs", out)[1]) * 1000,
        "p99": float(re.search(r"99% in ([\d.]+) secs", out)[1]) * 1000,
    }


def wait_http(url: str, host: str | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, headers={"Host": host} if host else {})  # noqa: S310 (http on loopback)
            with urllib.request.urlopen(request, timeout=2):  # noqa: S310
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from cryptography.fernet import Fernet

    work = Path(tempfile.mkdtemp(prefix="rcp-bench-proxy-"))
    key = secrets.token_hex(16)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "RUNS_", "LOG_"))},
        "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "false",
        "DATABASE_URL": os.environ.get("DATABASE_URL", f"sqlite:///{work}/db.sqlite3"),
        "SECRET_KEY": secrets.token_urlsafe(50), "FERNET_KEYS": Fernet.generate_key().decode(),
        "CREDENTIALS_API_TOKEN": secrets.token_urlsafe(32), "ALLOW_PRIVATE_NETWORK_TARGETS": "true",
        "SECURE_SSL_REDIRECT": "false", "PLATFORM_URL": "http://localhost:8000", "RUNS_EXECUTOR": "thread",
        "RUNS_RECOVER_ON_START": "false", "RATE_LIMIT_PROXY": "off", "LOG_LEVEL": "WARNING",
        "CACHE_SQLITE_PATH": str(work / "cache.sqlite3"), "WEB_CONCURRENCY": "2",
    }
    processes: list[subprocess.Popen] = []
    try:
        upstream_port = free_port()
        processes.append(subprocess.Popen([PYTHON, str(ROOT / "bench/slow_upstream.py"), str(upstream_port), key, "0"]))
        upstream = f"http://127.0.0.1:{upstream_port}"
        subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        seeded = subprocess.run([PYTHON, __file__, "--seed", upstream, key], cwd=ROOT, env=env, check=True,
                                capture_output=True, text=True).stdout.split()
        app_id, access_key, connection_id = seeded[-3:]
        port = free_port()
        processes.append(subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--no-control-socket", "--access-logfile", "/dev/null",
             "config.wsgi:application"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(work / "gunicorn.log", "wb")))
        wait_http(f"http://127.0.0.1:{port}/healthz", host="localhost")
        wait_http(f"{upstream}/__stats")
        direct = (f"{upstream}/ping", {"Authorization": f"Bearer {key}"}, None)
        proxied = (f"http://127.0.0.1:{port}/apps/{app_id}/v1/proxy/connections/{connection_id}/ping",
                   {"Authorization": f"Bearer {access_key}"}, "localhost")
        for url, headers, host in (direct, proxied):  # warm-up: imports, pools, per-process caches
            hey(url, n=200, c=4, headers=headers, host=host)
        results: dict[str, dict[str, list[float]]] = {"direct": {}, "proxy": {}}
        for _ in range(args.rounds):
            for name, (url, headers, host) in (("direct", direct), ("proxy", proxied)):
                c1 = hey(url, n=args.requests, c=1, headers=headers, host=host)
                c8 = hey(url, n=args.requests, c=8, headers=headers, host=host)
                for metric, value in (("p50_c1", c1["p50"]), ("p99_c1", c1["p99"]), ("rps_c8", c8["rps"])):
                    results[name].setdefault(metric, []).append(value)
        med = {name: {m: statistics.median(v) for m, v in metrics.items()} for name, metrics in results.items()}
        database = "PostgreSQL" if env["DATABASE_URL"].startswith("postgres") else "SQLite"
        print(f"\nProxy vs direct, loopback upstream, gunicorn ./gunicorn.conf.py x2 workers, {database}, "
              f"{args.rounds} rounds x {args.requests} requests, medians")
        print(f"{'':8} {'p50 c1 (ms)':>12} {'p99 c1 (ms)':>12} {'req/s c8':>10}")
        for name in ("direct", "proxy"):
            m = med[name]
            print(f"{name:8} {m['p50_c1']:12.2f} {m['p99_c1']:12.2f} {m['rps_c8']:10.0f}")
        d, p = med["direct"], med["proxy"]
        print(f"{'ratio':8} {p['p50_c1'] / d['p50_c1']:11.1f}x {p['p99_c1'] / d['p99_c1']:11.1f}x "
              f"{p['rps_c8'] / d['rps_c8']:9.2f}x")
        print(f"added latency at p50 c1: {p['p50_c1'] - d['p50_c1']:.2f} ms per call")
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--seed":
        seed(sys.argv[2], sys.argv[3])
    else:
        main()
