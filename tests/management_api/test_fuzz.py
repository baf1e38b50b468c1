"""Schemathesis against the project's own OpenAPI document (/v1/schema), through the WSGI app.

Every management operation is fuzzed with a valid access key: no 5xx, every answer conforms to the
documented status codes, content types and response schemas. Half of the cases target real objects
(the `world` fixture's IDs replace the generated path parameters), so PATCH/POST bodies are fuzzed
against live rows, not only against 404s. Bounded by `max_examples` to finish in a couple of minutes;
the number of cases run is printed at the end and written to test-artifacts/fuzz-summary.json.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from tests.conftest import assert_no_canary
from tests.support.fuzz_summary import write_fuzz_summary

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
if os.environ.get("PYTEST_XDIST_WORKER"):
    # schemathesis gives every operation's item the same node ID; xdist would keep one of them.
    pytestmark.append(pytest.mark.skip(reason="fuzzing runs without pytest-xdist (-n): items share one node ID"))

MANAGEMENT_TAGS = ["connections", "oauth2 providers", "workflows", "apps"]
MAX_EXAMPLES = 25
CASES: Counter = Counter()
STATUSES: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _fuzz_summary(request):
    yield
    write_fuzz_summary(request, label="schemathesis", artifact="fuzz-summary", cases=CASES, operations=len(CASES),
                       statuses=STATUSES, max_examples=MAX_EXAMPLES)


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    # Hypothesis sends a few hundred requests per operation with one key: over its write limit, the rest
    # would be 429s that never reach the handler being fuzzed. The limits and their 429 (checked against
    # this same document) are tested in tests/ops/test_rate_limits.py.
    settings.RATE_LIMITS = dict.fromkeys(settings.RATE_LIMITS)


@pytest.fixture(autouse=True)
def _keep_the_test_database_open():
    # The real WSGI handler closes the database connection when a request finishes, which would drop
    # the test database (in-memory SQLite) and its transaction; Django's test client unhooks the same.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


# Loaded when the module is collected (schema generation needs no database): one test per operation.
# (schemathesis.pytest.from_fixture would load it lazily, but its lazy loader does not run on pytest 9.)
schema = schemathesis.openapi.from_wsgi("/v1/schema?format=json", get_wsgi_application()).include(tag=MANAGEMENT_TAGS)

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck), database=None)
def test_management_api_conforms_to_its_schema(case, world, owner_key):
    ids = {
        "connection_id": world.api_connection.id, "provider_id": world.provider.id, "workflow_id": world.workflow.id,
        "requirement_id": world.requirement.id, "version_id": world.version.id, "app_id": world.app.id,
        "link_id": world.link.id,
    }
    label = f"{case.method} {case.path}"
    if case.path_parameters and CASES[label] % 2:
        case.path_parameters = {name: str(ids.get(name, uuid.uuid4())) for name in case.path_parameters}
    CASES[label] += 1
    response = case.call_and_validate(headers={"Authorization": f"Bearer {owner_key}"}, checks=CHECKS)
    STATUSES[response.status_code] += 1
    assert_no_canary(response.content)
