"""Schemathesis against the App-host part of the OpenAPI document (/v1/schema), through the WSGI app.

Every App-host operation (tag "app host") is fuzzed at `/apps/<app_id>/...` (the platform-host alias the
schema lists as a server) with a valid access key, against a seeded private App whose deployed version
calls a loopback stub twice: once with a stored shared credential, once with a requirement that user-42 has
linked. Checks: no 5xx; every status code, content type and JSON body is the documented one; no canary
secret in any answer.

Half of the cases are steered onto live data, so runs really execute instead of all ending in 400/404:
the path's `run_id` becomes a finished run of the App, its `flow_id` a fresh pending connect flow of the
linked user (tests/connect/test_verification.py has the confirm cases one by one), the body's `input` the workflow's own field, its
`user_id` the linked user, `file_ids` an uploaded file of the App, and `user_id` of the status endpoint
the linked user. Callback URLs are pointed at the loopback stub (a fuzzed URL on a private address would
otherwise be delivered to, and retried, for real).

The database is committed and shared (`shared_db`): streams execute in a thread of this process and
background/async runs on the thread executor, both on their own connections. Server-Sent Events answers
(`stream: true`, GET .../stream) are read to their end; their content type is checked, their frames are
not (schemathesis validates JSON bodies only; the SSE frames are covered by tests/runs/test_streams.py).

Bounded by `max_examples`; the number of cases is printed at the end and written to
test-artifacts/fuzz-app-host-summary.json.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from rest_framework.test import APIClient

from apps.runs.models import File, Run
from tests import factories
from tests.conftest import assert_no_canary
from tests.runs.conftest import _sqlite_template, actors, shared_db, thread_executor  # noqa: F401 (fixtures)
from tests.support.fuzz_summary import write_fuzz_summary
from tests.support.http_stub import HttpStub, echo

pytestmark = [pytest.mark.slow]
if os.environ.get("PYTEST_XDIST_WORKER"):
    # schemathesis gives every operation's item the same node ID; xdist would keep one of them.
    pytestmark.append(pytest.mark.skip(reason="fuzzing runs without pytest-xdist (-n): items share one node ID"))

APP_HOST_TAG = "app host"
MAX_EXAMPLES = 30
LINKED_USER = "user-42"
CASES: Counter = Counter()  # by request line: schemathesis also sends undocumented methods (405 expected)
OPERATIONS: set = set()  # the documented operations fuzzed
STATUSES: Counter = Counter()


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    # Hypothesis sends a few hundred requests per operation with one key: over its write limit, the rest
    # would be 429s that never reach the handler being fuzzed. The limits and their 429 (checked against
    # this same document) are tested in tests/ops/test_rate_limits.py.
    settings.RATE_LIMITS = dict.fromkeys(settings.RATE_LIMITS)


@pytest.fixture(scope="module", autouse=True)
def _fuzz_summary(request):
    yield
    write_fuzz_summary(request, label="schemathesis (App host)", artifact="fuzz-app-host-summary", cases=CASES, operations=len(OPERATIONS),
                       statuses=STATUSES, max_examples=MAX_EXAMPLES)


@dataclass
class AppWorld:
    app_id: str
    key: str
    run_id: str
    file_id: str
    stub: HttpStub
    shared_id: str = ""


@pytest.fixture
def app_world(actors, thread_executor):  # noqa: F811 (fixtures imported above)
    """A private App: one node with a shared stored credential, one with a requirement linked for user-42."""
    with HttpStub(echo) as stub:
        project = actors["project"]
        shared = factories.make_connection(
            project, name="fuzz-shared", config={"url": stub.url, "api_key": factories.CANARIES["shared_api_key"]})
        workflow = factories.make_workflow(project, "fuzz")
        requirement = factories.make_requirement(workflow)
        version = factories.make_version(workflow, factories.definition(
            factories.http_node("shared", ref={"id": str(shared.id)}, url=f"{stub.url}/shared"),
            factories.http_node("mine", ref={"requirement": str(requirement.id)}, url=f"{stub.url}/mine",
                                depends_on=("shared",)),
            input_fields={"question": {"type": "string", "required": False}},
        ))
        app = factories.make_app(project, name="Fuzzed", version=version)
        factories.link_end_user(app, requirement, LINKED_USER,
                                {"url": stub.url, "api_key": factories.CANARIES["user42_api_key"]})
        key = actors["owner_key"]
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        run = client.post(f"/apps/{app.id}/v1/runs", {"input": {"question": "seed"}, "user_id": LINKED_USER},
                          format="json")
        assert run.status_code == 200, run.content
        assert run.json()["status"] == Run.Status.COMPLETED
        upload = client.post(f"/apps/{app.id}/v1/files", {"file": _named_upload()}, format="multipart")
        assert upload.status_code == 201, upload.content
        yield AppWorld(app_id=str(app.id), key=key, run_id=run.json()["id"],
                       file_id=upload.json()["id"], stub=stub, shared_id=str(shared.id))


def _named_upload():
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("notes.txt", b"hello", content_type="text/plain")


# Loaded when the module is collected (schema generation needs no database): one test per operation.
schema = schemathesis.openapi.from_wsgi("/v1/schema?format=json", get_wsgi_application()).include(tag=APP_HOST_TAG)

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


def _steer(case, world: AppWorld) -> None:
    """Point this case at live data (see the module docstring)."""
    if case.path_parameters and "run_id" in case.path_parameters:
        case.path_parameters = {**case.path_parameters, "run_id": world.run_id}
    if case.path_parameters and "flow_id" in case.path_parameters:
        case.path_parameters = {**case.path_parameters, "flow_id": _pending_flow(world)}
    if isinstance(case.query, dict) and "user_id" in case.query and case.path == "/v1/requirements/status":
        case.query = {**case.query, "user_id": LINKED_USER}
    if case.path.startswith("/v1/proxy/"):
        # The proxy: the version's requirement (`billing`, linked for user-42) or its shared connection.
        params = dict(case.path_parameters or {})
        if "requirement_name" in params:
            params["requirement_name"] = "billing"
        if "connection_id" in params:
            params["connection_id"] = world.shared_id
        case.path_parameters = params
        case.query = {**(case.query if isinstance(case.query, dict) else {}), "user_id": LINKED_USER}
        if isinstance(case.headers, dict):
            case.headers = {k: v for k, v in case.headers.items() if k.lower() != "connect-user-id"}
    if isinstance(case.body, dict) and case.media_type == "application/json":
        body = dict(case.body)
        body["input"] = {"question": "fuzz"}
        if "user_id" in body:
            body["user_id"] = LINKED_USER
        if "file_ids" in body:
            body["file_ids"] = [world.file_id]
        case.body = body


def _pending_flow(world: AppWorld) -> str:
    """A fresh reconnect of the linked user waiting for the App's confirmation (its new config: the current one),
    so a confirm case meets a live flow: confirmed for the right user_id, discarded (422) for any other."""
    from django.db import transaction

    from apps.connect import verification
    from apps.connect.models import ConnectFlow, EndUserLink

    link = EndUserLink.objects.select_related("app", "requirement", "connection").get(
        app_id=world.app_id, user_id=LINKED_USER)
    with transaction.atomic():
        flow = verification.flow_start(app=link.app, user_id=LINKED_USER, requirement=link.requirement,
                                       connection=link.connection, kind=ConnectFlow.Kind.RECONNECT,
                                       pending_config=dict(link.connection.config))
    return str(flow.pk)


def _callbacks_to_stub(case, world: AppWorld) -> None:
    if isinstance(case.body, dict) and isinstance(case.body.get("callbacks"), list):
        case.body = {**case.body, "callbacks": [
            {**c, "url": f"{world.stub.url}/callback"} if isinstance(c, dict) else c for c in case.body["callbacks"]
        ]}


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck), database=None)
def test_app_host_api_conforms_to_its_schema(case, app_world):
    label = f"{case.method} {case.path}"
    if CASES[label] % 2:
        _steer(case, app_world)
    _callbacks_to_stub(case, app_world)
    CASES[label] += 1
    OPERATIONS.add(f"{case.operation.method.upper()} {case.operation.path}")
    response = case.call_and_validate(
        base_url=f"http://localhost/apps/{app_world.app_id}",
        headers={"Authorization": f"Bearer {app_world.key}"}, checks=CHECKS,
    )
    STATUSES[response.status_code] += 1
    assert_no_canary(response.content)


def test_the_fuzzed_app_really_ran(app_world):
    """Guard against a fuzz run that only ever met 400s: the seeded run used both credentials."""
    run = Run.objects.get(id=app_world.run_id)
    assert run.nodes["shared"]["connection"]["owner"] == "project"
    assert run.nodes["mine"]["connection"]["user_id"] == LINKED_USER
    assert File.objects.filter(id=app_world.file_id).exists()
