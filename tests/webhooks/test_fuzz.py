"""Schemathesis against the webhook operations of the OpenAPI document (/v1/schema, tag `webhooks`), through the
WSGI app, as tests/management_api/test_fuzz.py does for the other management operations: no 5xx, every answer
conforms to the documented status codes, content types and response schemas. Half of the cases target the
world's webhook and delivery. Any URL with a host is pointed at a closed loopback port first, so no case resolves
a name on the internet (nothing is sent either: on_commit never fires in these transactions)."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from urllib.parse import urlsplit

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from tests.conftest import assert_no_canary
from tests.management_api.conftest import world  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
if os.environ.get("PYTEST_XDIST_WORKER"):
    pytestmark.append(pytest.mark.skip(reason="fuzzing runs without pytest-xdist (-n): items share one node ID"))

MAX_EXAMPLES = 25
CASES: Counter = Counter()
LOOPBACK = "http://127.0.0.1:9/fuzz"


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    settings.RATE_LIMITS = dict.fromkeys(settings.RATE_LIMITS)


@pytest.fixture(autouse=True)
def _keep_the_test_database_open():
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


schema = schemathesis.openapi.from_wsgi("/v1/schema?format=json", get_wsgi_application()).include(tag="webhooks")

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


def _has_host(url) -> bool:
    try:
        return isinstance(url, str) and bool(urlsplit(url).hostname)
    except ValueError:
        return False


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck), database=None)
def test_webhook_api_conforms_to_its_schema(case, world, owner_key):  # noqa: F811
    ids = {"webhook_id": world.webhook.id, "delivery_id": world.webhook_delivery.id}
    label = f"{case.method} {case.path}"
    if case.path_parameters and CASES[label] % 2:
        case.path_parameters = {name: str(ids.get(name, uuid.uuid4())) for name in case.path_parameters}
    CASES[label] += 1
    if isinstance(case.body, dict) and _has_host(case.body.get("url")):
        case.body = {**case.body, "url": LOOPBACK}
    response = case.call_and_validate(headers={"Authorization": f"Bearer {owner_key}"}, checks=CHECKS)
    assert_no_canary(response.content)


def test_every_webhook_operation_was_fuzzed():
    # Runs after the parametrized cases of this module (pytest keeps file order).
    documented = {"GET /v1/webhooks", "POST /v1/webhooks", "GET /v1/webhooks/{webhook_id}",
                  "PATCH /v1/webhooks/{webhook_id}", "DELETE /v1/webhooks/{webhook_id}",
                  "POST /v1/webhooks/{webhook_id}/test", "POST /v1/webhooks/{webhook_id}/rotate_secret",
                  "GET /v1/webhooks/{webhook_id}/deliveries", "POST /v1/webhook_deliveries/{delivery_id}/redeliver"}
    if CASES:  # (run alone, e.g. with -k, the fuzz cases did not run)
        assert documented <= set(CASES), sorted(documented - set(CASES))
