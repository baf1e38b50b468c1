"""Database unavailable (SPEC §15), in process on both backends: every kind of endpoint answers
`503 service_unavailable` with Retry-After (DRF views, plain Django views, errors raised in middleware),
one warning line per incident and no traceback, and the next request after recovery is served normally.
The live variant (gunicorn, PostgreSQL behind a proxy that is stopped and restarted) is
test_database_outage_live.py."""

from __future__ import annotations

import logging
import uuid

import pytest
from django.test import Client

from apps.core.outage import database_outage
from tests import factories
from tests.ops.conftest import database_unreachable

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def key(project):
    return factories.make_key(project, name="owner")


def requests_of_every_kind(client: Client, key: str):
    """One request per path through the stack that reads the database."""
    yield "DRF view (access-key auth)", client.get("/v1/workflows", HTTP_AUTHORIZATION=f"Bearer {key}")
    yield "middleware (App lookup)", client.get(f"/apps/{uuid.uuid4()}/v1/requirements/status?user_id=u")
    yield "middleware (App hostname)", client.get("/v1/runs", HTTP_HOST="bot.example.org")
    yield "plain Django view (admin login)", client.post("/admin/login/", {"username": "a", "password": "b"})


def test_every_endpoint_answers_503_while_the_database_is_down(key, tmp_path, caplog):
    client = Client(raise_request_exception=False)  # middleware errors reach handler500, as in production
    caplog.set_level(logging.INFO)
    with database_unreachable(tmp_path):
        for _ in range(3):
            for kind, response in requests_of_every_kind(client, key):
                assert response.status_code == 503, (kind, response.content[:300])
                assert response["Content-Type"] == "application/json", kind
                assert response.json()["error"]["code"] == "service_unavailable", kind
                assert response["Retry-After"] == "5", kind

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    # One line for the incident (12 requests), no traceback, nothing from Django's request logger.
    assert [r.name for r in warnings] == ["apps.core.outage"], [r.getMessage() for r in warnings]
    assert warnings[0].exc_info is None
    assert "database unavailable: OperationalError" in warnings[0].getMessage()

    # Recovery without a restart: the next requests get their usual answers, and the incident is closed
    # when a new connection succeeds (the swap above kept the test's old connection open; a real one that
    # failed is closed by Django at the end of its request, and CONN_MAX_AGE recycles the others).
    from django.db import connection

    connection.close()
    statuses = {kind: response.status_code for kind, response in requests_of_every_kind(client, key)}
    assert statuses == {"DRF view (access-key auth)": 200, "middleware (App lookup)": 404,
                        "middleware (App hostname)": 400, "plain Django view (admin login)": 200}
    recovered = [r.getMessage() for r in caplog.records if r.name == "apps.core.outage" and r.levelno == logging.INFO]
    assert len(recovered) == 1 and recovered[0].startswith("database reachable again after ")
    assert "12 request(s) were answered 503" in recovered[0]
    assert database_outage.since is None and database_outage.incidents == 1


def test_a_long_incident_repeats_its_line_at_most_once_per_interval(key, tmp_path, caplog, settings):
    settings.DATABASE_UNAVAILABLE_LOG_INTERVAL_SECONDS = 0  # every 503 is "an interval later"
    client = Client()
    with database_unreachable(tmp_path):
        client.get("/v1/workflows", HTTP_AUTHORIZATION=f"Bearer {key}")
        client.get("/v1/workflows", HTTP_AUTHORIZATION=f"Bearer {key}")
    lines = [r for r in caplog.records if r.name == "apps.core.outage" and r.levelno == logging.WARNING]
    assert len(lines) == 2  # the interval is what makes a burst one line (the test above)
    assert database_outage.incidents == 1


def test_each_incident_has_its_line(key, tmp_path, caplog):
    from django.db import connection

    client = Client()
    for _ in range(2):
        with database_unreachable(tmp_path):
            assert client.get("/v1/workflows", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 503
            assert client.get("/v1/workflows", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 503
        connection.close()
        assert client.get("/v1/workflows", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    lines = [r.levelname for r in caplog.records if r.name == "apps.core.outage"]
    assert lines == ["WARNING", "INFO", "WARNING", "INFO"]


def test_the_retry_after_is_configurable(key, tmp_path, settings):
    settings.DATABASE_UNAVAILABLE_RETRY_AFTER_SECONDS = 30
    with database_unreachable(tmp_path):
        response = Client(raise_request_exception=False).get("/v1/workflows", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 503 and response["Retry-After"] == "30"


def test_the_startup_check_says_it_could_not_check_stored_secrets(tmp_path, caplog):
    from django.core import checks

    from apps.core.checks import fernet_keys_open_stored_secrets, verify_stored_secrets

    with database_unreachable(tmp_path):
        problems = fernet_keys_open_stored_secrets()
        verify_stored_secrets()  # the WSGI start: goes on (requests answer 503) but logs a warning
    assert [(p.id, p.level) for p in problems] == [("core.W001", checks.WARNING)]
    assert "Stored secrets were not checked against FERNET_KEYS: the database is unavailable" in problems[0].msg
    lines = [r.getMessage() for r in caplog.records if r.name == "apps.core.checks"]
    assert len(lines) == 1 and "Stored secrets were not checked" in lines[0]
