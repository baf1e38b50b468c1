"""Server processes for the runs tests: a gunicorn master serving the platform; stopping a process group.

Each process is started in its own session (process group) so that stopping it reaches its children too
(gunicorn's worker, Celery's pool), and its output goes to a log file that failures quote.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from tests.runs.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]

_LISTENING = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+)")


def stop_process_groups(processes: list[subprocess.Popen | None], *, sig: int = signal.SIGTERM,
                        timeout: float = 20) -> None:
    """Send `sig` to each process's group (all first, so they shut down side by side), then wait for each;
    SIGKILL a group still there after `timeout` seconds."""
    running = [p for p in processes if p is not None and p.poll() is None]
    for process in running:
        os.killpg(process.pid, sig)
    for process in running:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def stop_process_group(process: subprocess.Popen | None, *, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    stop_process_groups([process], sig=sig, timeout=timeout)


class Gunicorn:
    """`gunicorn config.wsgi` with ONE worker (or `workers`) on 127.0.0.1 (a free port gunicorn picks), from the
    project root so gunicorn.conf.py applies. `env` is the whole environment of the process."""

    def __init__(self, env: dict[str, str], log: Path, *, name: str = "gunicorn", workers: int = 1):
        self.env, self.log, self.name, self.workers = env, log, name, workers
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self) -> Gunicorn:
        """Start without waiting (start several, then wait for each: they boot in parallel)."""
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(
                # --no-control-socket: gunicorn 27 opens one at a fixed path (~/.gunicorn/gunicorn.ctl) by
                # default, which two masters (or another suite's) would take from each other.
                [sys.executable, "-m", "gunicorn", "--workers", str(self.workers), "--bind", "127.0.0.1:0", "--log-level", "info",
                 "--no-control-socket", "config.wsgi:application"],
                cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self

    def wait_ready(self, *, host: str, timeout: float = 60) -> Gunicorn:
        """Wait for the bound port (gunicorn's log), then for the worker to answer /healthz on `host`."""
        def listening():
            self._assert_alive()
            match = _LISTENING.search(self.log.read_bytes())
            return int(match[1]) if match else None

        self.port = wait_for(listening, timeout=timeout, message=f"{self.name} to bind its port")

        def healthy():
            self._assert_alive()
            try:
                status, _ = self.request("GET", "/healthz", host=host, timeout=2)
            except OSError:  # the worker is still booting: the master holds the socket, nobody accepts yet
                return False
            return status == 200

        wait_for(healthy, timeout=timeout, interval=0.1, message=f"{self.name} to answer /healthz")
        return self

    def request(self, method: str, path: str, *, host: str, body: Any = None, headers: dict[str, str] | None = None,
                timeout: float = 30) -> tuple[int, Any]:
        """One request on a fresh connection (gunicorn's sync worker closes each); returns (status, JSON or text)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            all_headers = {"Host": host, **({"Content-Type": "application/json"} if payload is not None else {}),
                           **(headers or {})}
            connection.request(method, path, body=payload, headers=all_headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def _assert_alive(self) -> None:
        assert self.process is not None and self.process.poll() is None, f"{self.name} exited:\n{self.log_tail()}"

    @staticmethod
    def stop_all(servers: list[Gunicorn]) -> None:
        # SIGQUIT: gunicorn's quick shutdown (a test has nothing in flight to drain).
        stop_process_groups([server.process for server in servers], sig=signal.SIGQUIT)


def production_env(settings, database_url: str, *, drop_prefixes: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """The environment of platform processes a test starts with the production settings (config.settings, DEBUG
    off) on `database_url`. DEBUG off refuses the public development keys, so fresh ones are made and set on
    this process's `settings` too, before it stores anything the processes decrypt. Variables of this process
    starting with `drop_prefixes` are left out; `extra` is added last."""
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes)},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "false",
        "DATABASE_URL": database_url,
        "SECRET_KEY": settings.SECRET_KEY,
        "FERNET_KEYS": ",".join(settings.FERNET_KEYS),
        "CREDENTIALS_API_TOKEN": secrets.token_urlsafe(32),
        "ALLOW_PRIVATE_NETWORK_TARGETS": "true",  # upstreams are on loopback
        "SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback, no TLS proxy in front
        "PLATFORM_URL": settings.PLATFORM_URL,
        "APPS_DOMAIN": settings.APPS_DOMAIN,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "RUNS_EXECUTOR": "thread",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
