"""A Redis key prefix a test owns on the shared local Redis: its keys are deleted afterwards, never a flush."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from django.conf import settings

from tests.conftest import REQUIRE_SERVICES

REDIS_URL = "redis://127.0.0.1:6379/15"


@contextmanager
def owned_prefix() -> Iterator[tuple[redis.Redis, str]]:
    """(client, prefix) for this test's keys; skipped without Redis unless REQUIRE_SERVICES (CI) says fail."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        if REQUIRE_SERVICES:
            raise
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"rcp-test-{settings.TEST_SESSION}-{secrets.token_hex(4)}"
    try:
        yield client, prefix
    finally:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
