from __future__ import annotations

import socket
from contextlib import contextmanager

import pytest
from django.db import connections

from apps.core import health
from apps.core.outage import database_outage
from tests.support.databases import default_database


@pytest.fixture(autouse=True)
def _fresh_health_state():
    health.reset()
    database_outage.reset()
    yield
    health.reset()
    database_outage.reset()


def closed_port() -> int:
    """A loopback TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def database_unreachable(tmp_path):
    """The default connection pointed at a database that cannot be opened, for the block's duration:
    PostgreSQL on a closed loopback port; SQLite at a path under a missing directory."""
    original_settings = connections.settings["default"]
    if original_settings["ENGINE"].endswith("sqlite3"):
        broken = {"NAME": str(tmp_path / "missing-dir" / "db.sqlite3")}
    else:
        broken = {"HOST": "127.0.0.1", "PORT": str(closed_port())}
    with default_database(**broken):
        yield
