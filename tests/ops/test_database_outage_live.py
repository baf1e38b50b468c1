"""The database goes away under a running server and comes back (SPEC §15), the production way: gunicorn
with gunicorn.conf.py and the production settings (DEBUG off, HTTPS redirect on, behind a TLS proxy).

PostgreSQL: the server reaches the test database through a loopback TCP proxy (tests/support/tcp_proxy.py)
that the test stops (open connections reset, new ones refused) and starts again. The server is even
started while the database is down: it starts, says the stored secrets were not checked, answers 503.
SQLite: the database file is moved away and a directory put in its place (with CONN_MAX_AGE=0, so each
request opens the file: an open SQLite connection keeps reading a moved file), then moved back.

Both: while down, a DRF view, a middleware lookup and /readyz answer 503 (Retry-After) and /healthz 200;
after, 200 again without a restart; the log has one warning line per incident and no traceback.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from django.db import connections

from tests import factories
from tests.ops.conftest import closed_port
from tests.runs.conftest import _sqlite_template, shared_db, wait_for  # noqa: F401  (fixtures)
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HTTPS = {"Host": "localhost", "X-Forwarded-Proto": "https"}  # as the TLS proxy in front would send


class Outage:
    """Takes the server's database away and gives it back."""

    def __init__(self, database_url: str, tmp_path: Path):
        self.url = database_url
        self.proxy = None
        if database_url.startswith("postgres"):
            from urllib.parse import urlsplit

            parts = urlsplit(database_url)
            self.proxy = TcpProxy(parts.hostname, parts.port or 5432)
            self.proxy.start()
            self.server_url = parts._replace(netloc=f"{parts.username}@127.0.0.1:{self.proxy.port}").geturl()
        else:
            self.path = Path(database_url.removeprefix("sqlite:///"))
            self.away = tmp_path / "moved-away.sqlite3"
            self.server_url = database_url

    def down(self) -> None:
        if self.proxy:
            self.proxy.stop()
            return
        connections["default"].close()  # this process's connection (WAL) must not keep the files in use
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.rename(f"{self.away}{suffix}")
        self.path.mkdir()  # "unable to open database file"

    def up(self) -> None:
        if self.proxy:
            self.proxy.start()
            return
        self.path.rmdir()
        for suffix in ("", "-wal", "-shm"):
            moved = Path(f"{self.away}{suffix}")
            if moved.exists():
                moved.rename(f"{self.path}{suffix}")

    def close(self) -> None:
        if self.proxy:
            self.proxy.stop()
        elif self.path.is_dir():
            self.up()


@pytest.fixture
def outage(shared_db, tmp_path):  # noqa: F811
    outage = Outage(shared_db, tmp_path)
    yield outage
    outage.close()


class Gunicorn:
    def __init__(self, database_url: str, log: Path, *, sqlite: bool):
        self.port = closed_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "RUNS_"))},
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "FERNET_KEYS": Fernet.generate_key().decode(),
            "CREDENTIALS_API_TOKEN": secrets.token_urlsafe(32),
            "BEHIND_TLS_PROXY": "true",
            "DATABASE_URL": database_url,
            "RUNS_RECOVER_ON_START": "false",
            "PYTHONUNBUFFERED": "1",
            "LOG_FORMAT": "text",  # the assertions below read text lines; JSON lines are tests/ops/test_logs.py's
        }
        if sqlite:
            self.env["CONN_MAX_AGE"] = "0"
        self.process = None

    def start(self) -> Gunicorn:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{self.port}",
             "--workers", "1", "--worker-class", "gthread", "--threads", "4"],
            cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(self._answers, timeout=60, message="gunicorn to answer /healthz")
        return self

    def _answers(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        try:
            return httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def assert_unavailable(client: httpx.Client, key: str) -> None:
    for response in (client.get("/v1/workflows", headers={**HTTPS, "Authorization": f"Bearer {key}"}),
                     client.get(f"/apps/{uuid.uuid4()}/v1/requirements/status?user_id=u", headers=HTTPS)):
        assert response.status_code == 503, response.text[:300]
        assert response.json()["error"]["code"] == "service_unavailable"
        assert response.headers["Retry-After"] == "5"
    ready = client.get("/readyz")  # plain HTTP, the load balancer's own Host: no redirect, no 400
    assert ready.status_code == 503 and ready.json()["failing"] == ["database"]
    assert client.get("/healthz").json() == {"status": "ok"}


def assert_available(client: httpx.Client, key: str) -> None:
    for _ in range(8):  # more than the worker's threads: each thread's connection is renewed
        response = client.get("/v1/workflows", headers={**HTTPS, "Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text[:300]
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "migrations": "ok", "secrets": "ok"}}


def test_the_server_answers_503_while_the_database_is_down_and_recovers_without_restart(outage, tmp_path):
    key = factories.make_key(factories.make_project("Acme", "Ops"), name="ops")
    server = Gunicorn(outage.server_url, tmp_path / "gunicorn.log", sqlite=outage.proxy is None)
    if outage.proxy:
        outage.down()  # PostgreSQL: the server even starts while the database is unreachable
    try:
        server.start()
        with httpx.Client(base_url=server.base, timeout=30) as client:
            if outage.proxy:
                assert_unavailable(client, key)
                outage.up()
            assert_available(client, key)
            outage.down()
            for _ in range(3):
                assert_unavailable(client, key)
            outage.up()
            assert_available(client, key)
    finally:
        server.stop()
    log = server.log.read_text()
    incidents = 2 if outage.proxy else 1
    assert log.count("WARNING apps.core.outage database unavailable: ") == incidents, log
    assert log.count("INFO apps.core.outage database reachable again after ") == incidents, log
    assert "Traceback" not in log and "Service Unavailable" not in log and "Internal Server Error" not in log, log
    if outage.proxy:
        assert "Stored secrets were not checked against FERNET_KEYS: the database is unavailable" in log, log
