"""/healthz and /readyz (SPEC §15): answered on any host, over plain HTTP even with SECURE_SSL_REDIRECT,
liveness without the database, readiness naming the failing checks."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client

from apps.core import health
from tests import factories
from tests.conftest import REQUIRE_SERVICES
from tests.ops.conftest import closed_port, database_unreachable

# A load balancer probes with its own view of the address: an IP literal, an unknown name, the App domain.
PROBE_HOSTS = ["10.0.0.7:8000", "[2001:db8::1]", "lb-probe.internal", "testserver"]


@pytest.fixture
def probe():
    return Client()


@pytest.fixture
def https_redirect(settings):
    settings.SECURE_SSL_REDIRECT = True


@pytest.mark.parametrize("host", PROBE_HOSTS)
def test_it_answers_healthz_on_any_host_over_plain_http(probe, https_redirect, host):
    response = probe.get("/healthz", HTTP_HOST=host)
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok"}


def test_other_paths_still_redirect_and_refuse_unknown_hosts(probe, https_redirect, db):
    # The exemption is the two probes, nothing else.
    assert probe.get("/v1/workflows").status_code == 301
    assert probe.get("/v1/workflows", HTTP_HOST="10.0.0.7", secure=True).status_code == 400


def test_healthz_does_not_touch_the_database(probe, tmp_path, django_db_blocker):
    with django_db_blocker.unblock(), database_unreachable(tmp_path):
        response = probe.get("/healthz", HTTP_HOST="10.0.0.7")
    assert response.status_code == 200


@pytest.mark.parametrize("host", PROBE_HOSTS)
def test_it_is_ready_on_any_host(probe, https_redirect, db, host):
    response = probe.get("/readyz", HTTP_HOST=host)
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "migrations": "ok", "secrets": "ok"}}


def test_head_probes_answer(probe, db):
    assert probe.head("/healthz", HTTP_HOST="10.0.0.7").status_code == 200
    assert probe.head("/readyz", HTTP_HOST="10.0.0.7").status_code == 200


def test_it_is_not_ready_without_the_database(probe, tmp_path, django_db_blocker):
    with django_db_blocker.unblock(), database_unreachable(tmp_path):
        response = probe.get("/readyz", HTTP_HOST="10.0.0.7")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json() == {"status": "unavailable", "checks": {"database": "unavailable"}, "failing": ["database"]}


def test_it_is_not_ready_with_a_migration_missing(probe, db):
    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute("DELETE FROM django_migrations WHERE app = 'runs' AND name = "
                       "(SELECT MAX(name) FROM django_migrations WHERE app = 'runs')")
    response = probe.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["migrations"]
    assert body["checks"]["migrations"] == "1 migration(s) not applied: run `manage.py migrate`"


def test_it_is_not_ready_when_fernet_keys_cannot_open_a_stored_secret(probe, project, settings):
    factories.make_connection(project)  # encrypted with the current key
    assert probe.get("/readyz").status_code == 200
    settings.FERNET_KEYS = ["b1pSb0VpQVhVM0dQZ3ZCZ2Rsb0FtYTdKZ2VQdW9YbU0="]  # another valid key
    response = probe.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["secrets"]
    assert body["checks"]["secrets"] == "a stored connections.Connection.config cannot be decrypted with FERNET_KEYS"


def test_with_the_celery_executor_it_checks_redis(probe, db, settings):
    settings.RUNS_EXECUTOR = "celery"
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port()}/0"
    response = probe.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["redis"]

    import redis

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        if REQUIRE_SERVICES:
            raise
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    response = probe.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"]["redis"] == "ok"


def test_with_a_redis_cache_it_checks_the_cache(probe, db, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": f"redis://127.0.0.1:{closed_port()}/0"}}
    response = probe.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["cache.default"]


def test_the_migration_answer_is_kept_once_applied(db):
    assert health.check_migrations() == "ok"
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = 'runs'")
    # Kept: this process's code cannot gain migrations without a restart.
    assert health.check_migrations() == "ok"
