from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import factories
from tests.support.http_stub import HttpStub

# The session-wide canary scan (tests/support/canary.py): every response, log record and stored row the
# session produces is checked for every secret it stored.
pytest_plugins = ["tests.support.canary"]

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


@pytest.fixture(autouse=True)
def _private_targets_allowed(settings):
    # Test upstreams live on loopback. SSRF tests switch the guard back on explicitly.
    settings.ALLOW_PRIVATE_NETWORK_TARGETS = True


@pytest.fixture(scope="session", autouse=True)
def _session_cache_file():
    """The session's SQLite cache file (tests/settings.py) is removed when the session ends."""
    yield
    from django.conf import settings

    if settings.CACHES["default"]["BACKEND"] == "apps.core.cache.SQLiteCache":
        for suffix in ("", "-wal", "-shm"):
            Path(settings.CACHES["default"]["LOCATION"] + suffix).unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _fresh_rate_limit_counters():
    """Every test starts with no rate-limit counter (anonymous requests of the whole session share one client
    address). Only the session's own SQLite cache is emptied (tests/settings.py), never a shared Redis."""
    from django.core.cache import caches

    from apps.core.cache import SQLiteCache

    cache = caches["default"]
    if isinstance(cache, SQLiteCache):
        cache.clear()


@pytest.fixture
def project(db):
    return factories.make_project("Acme", "Billing")


@pytest.fixture
def teammate_project(db):
    """Another project of the same organization."""
    return factories.make_project("Acme", "Support")


@pytest.fixture
def outsider_project(db):
    """A project of another organization."""
    return factories.make_project("Globex", "Everything")


@pytest.fixture
def owner_key(project):
    return factories.make_key(project, name="owner")


@pytest.fixture
def org_key(project):
    return factories.make_key(project, org_wide=True, name="org-wide")


@pytest.fixture
def teammate_key(teammate_project):
    return factories.make_key(teammate_project, name="teammate")


@pytest.fixture
def outsider_key(outsider_project):
    return factories.make_key(outsider_project, name="outsider")


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def upstream():
    """A loopback echo server standing in for a third-party API."""
    with HttpStub() as stub:
        yield stub


@pytest.fixture
def canaries():
    return factories.CANARIES


def assert_no_canary(text: str | bytes) -> None:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    leaked = [name for name, value in factories.CANARIES.items() if value in text]
    assert not leaked, f"secret(s) leaked: {leaked}"


# The `browser` fixture (Debian's Chromium through Playwright) for every browser test module; imported last: the
# module reads REQUIRE_SERVICES from here.
from tests.support.browser import browser  # noqa: E402, F401
