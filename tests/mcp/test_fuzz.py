"""Schemathesis against the MCP operations of the OpenAPI document (/v1/schema), through the WSGI app: POST
/v1/mcp/sessions and POST /mcp (as far as OpenAPI describes a JSON-RPC body), at `/apps/<app_id>/...` with a
valid access key, against an App with `mcp_enabled`. Half of the /mcp cases are steered onto real messages
(initialize, tools/list, tools/call with a session) so the dispatcher is reached, not only the envelope checks.
Checks: no 5xx; status codes, content types and JSON bodies as documented; no canary secret in any answer."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings

from tests import factories
from tests.conftest import assert_no_canary
from tests.mcp.conftest import accounts_api, mcp_definition
from tests.mcp.support import ACCEPT
from tests.runs.conftest import _sqlite_template, actors, shared_db  # noqa: F401 (fixtures)
from tests.support.fuzz_summary import write_fuzz_summary
from tests.support.http_stub import HttpStub

pytestmark = [pytest.mark.slow]
if os.environ.get("PYTEST_XDIST_WORKER"):
    pytestmark.append(pytest.mark.skip(reason="fuzzing runs without pytest-xdist (-n): items share one node ID"))

MAX_EXAMPLES = 40
CASES: Counter = Counter()
STATUSES: Counter = Counter()
STEERED = [
    {"jsonrpc": "2.0", "id": 1, "method": "initialize",
     "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "1"}}},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "fuzzed-mcp", "arguments": {"question": "q"}}},
    {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "fuzzed-mcp", "arguments": {"question": 1}}},
]


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    settings.RATE_LIMITS = dict.fromkeys(settings.RATE_LIMITS)


@pytest.fixture(scope="module", autouse=True)
def _fuzz_summary(request):
    yield
    write_fuzz_summary(request, label="schemathesis (MCP)", artifact="fuzz-mcp-summary", cases=CASES,
                       operations=len({c.split(" ", 1)[1] for c in CASES}), statuses=STATUSES, max_examples=MAX_EXAMPLES)


@pytest.fixture
def mcp_app(actors):  # noqa: F811
    with HttpStub(accounts_api) as stub:
        project = actors["project"]
        workflow = factories.make_workflow(project, "fuzz-mcp")
        requirement = factories.make_requirement(workflow)
        version = factories.make_version(workflow, mcp_definition(requirement, stub.url))
        app = factories.make_app(project, name="Fuzzed MCP", version=version, mcp_enabled=True)
        factories.link_end_user(app, requirement, "user-42", {"url": stub.url, "api_key": factories.CANARIES["user42_api_key"]})
        yield app, actors["owner_key"]


schema = schemathesis.openapi.from_wsgi("/v1/schema?format=json", get_wsgi_application()).include(tag="mcp")
CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.status_code_conformance,
          schemathesis.checks.content_type_conformance, schemathesis.checks.response_schema_conformance]


def _session(app, key) -> str:
    from rest_framework.test import APIClient

    response = APIClient().post(f"/apps/{app.id}/mcp", data=json.dumps(STEERED[0]), content_type="application/json",
                                HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_ACCEPT=ACCEPT)
    return response["Mcp-Session-Id"]


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
def test_the_mcp_operations_conform_to_their_schema(case, mcp_app):
    app, key = mcp_app
    label = f"{case.method} {case.path}"
    headers = {"Authorization": f"Bearer {key}"}
    if case.path == "/mcp" and CASES[label] % 2:
        case.body = STEERED[(CASES[label] // 2) % len(STEERED)]
        case.media_type = "application/json"
        headers.update({"Accept": ACCEPT, "Mcp-Session-Id": _session(app, key)})
    CASES[label] += 1
    response = case.call_and_validate(base_url=f"http://localhost/apps/{app.id}", headers=headers, checks=CHECKS)
    STATUSES[response.status_code] += 1
    assert_no_canary(response.content)

