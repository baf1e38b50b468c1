"""The App-host API in the OpenAPI document: every operation documented (tags, IDs, security, errors,
closed request bodies, event streams), and the documented shapes are the ones the views return."""

from __future__ import annotations

import pytest

from apps.management_api.schema import PlatformSchemaGenerator
from tests import factories
from tests.management_api.conftest import client_for

pytestmark = pytest.mark.django_db

APP_HOST_OPERATIONS = {
    ("post", "/"): "app_invoke",
    ("get", "/v1/runs"): "app_runs_list",
    ("post", "/v1/runs"): "app_runs_create",
    ("get", "/v1/runs/{run_id}"): "app_runs_retrieve",
    ("get", "/v1/runs/{run_id}/events"): "app_runs_events_list",
    ("get", "/v1/runs/{run_id}/stream"): "app_runs_stream",
    ("post", "/v1/runs/{run_id}/cancel"): "app_runs_cancel",
    ("get", "/v1/requirements/status"): "app_requirements_status",
    ("post", "/v1/files"): "app_files_create",
    **{(method, "/v1/proxy/{requirement_name}/{path}"): f"app_proxy_requirement_{method}"
       for method in ("get", "post", "put", "patch", "delete")},
    **{(method, "/v1/proxy/connections/{connection_id}/{path}"): f"app_proxy_connection_{method}"
       for method in ("get", "post", "put", "patch", "delete")},
}
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def document() -> dict:
    return PlatformSchemaGenerator().get_schema(request=None, public=True)


def _operation(document, method, path) -> dict:
    return document["paths"][path][method]


def _properties(document, name) -> set[str]:
    return set(document["components"]["schemas"][name]["properties"])


def _ref(content: dict) -> str:
    return content["schema"]["$ref"].rsplit("/", 1)[-1]


@pytest.fixture
def app(project, upstream):
    """A private App calling the loopback upstream with a stored credential."""
    shared = factories.make_connection(project, config={"url": upstream.url, "api_key": factories.CANARIES["shared_api_key"]})
    workflow = factories.make_workflow(project)
    version = factories.make_version(workflow, factories.definition(
        factories.http_node("call", ref={"id": str(shared.id)}, url=f"{upstream.url}/call")))
    return factories.make_app(project, version=version)


@pytest.fixture
def owner(owner_key):
    return client_for(owner_key)


def test_every_app_host_operation_is_documented_on_the_app_host_servers(document):
    found = {(method, path): op["operationId"] for path, item in document["paths"].items() if "servers" in item
             for method, op in item.items() if method in METHODS and op["tags"] == ["app host"]}
    assert found == APP_HOST_OPERATIONS
    ids = [op["operationId"] for item in document["paths"].values() for m, op in item.items() if m in METHODS]
    assert len(ids) == len(set(ids))
    for (method, path) in APP_HOST_OPERATIONS:
        operation = _operation(document, method, path)
        # The run stream also accepts the token of a `stream_url` (SPEC.md section 12); nothing else does.
        expected = [{"streamToken": []}, {"accessKey": []}] if path == "/v1/runs/{run_id}/stream" else [{"accessKey": []}]
        assert operation["security"] == expected, (method, path)
        assert "public" in operation["description"].lower(), (method, path)
        for code in ("401", "403", "404"):
            assert _ref(operation["responses"][code]["content"]["application/json"]) == "Error", (method, path, code)


def test_app_host_request_bodies_are_closed(document):
    bodies = {
        ("post", "/"): {"application/json": "InvokeRequest", "multipart/form-data": "InvokeMultipartRequest"},
        ("post", "/v1/runs"): {"application/json": "RunCreateRequest", "multipart/form-data": "RunCreateMultipartRequest"},
        ("post", "/v1/files"): {"multipart/form-data": "FileUploadRequest"},
    }
    schemas = document["components"]["schemas"]
    for (method, path), expected in bodies.items():
        content = _operation(document, method, path)["requestBody"]["content"]
        assert {media: _ref(body) for media, body in content.items()} == expected
        for name in expected.values():
            assert schemas[name]["additionalProperties"] is False, name
    assert schemas["CallbackRequest"]["additionalProperties"] is False
    assert "requestBody" not in _operation(document, "post", "/v1/runs/{run_id}/cancel")
    # The documented fields are exactly the accepted ones (apps/runs/requests.py).
    from apps.runs.requests import INVOKE_FIELDS, RUNS_FIELDS

    assert _properties(document, "InvokeRequest") | {"files"} == set(INVOKE_FIELDS)
    assert _properties(document, "InvokeMultipartRequest") == set(INVOKE_FIELDS)
    assert _properties(document, "RunCreateRequest") | {"files"} == set(RUNS_FIELDS)
    assert _properties(document, "RunCreateMultipartRequest") == set(RUNS_FIELDS)


def test_run_answers_and_event_streams_are_documented(document):
    # 202s carry `stream_url` (SPEC.md section 12): the background Run comes bare, as RunStarted.
    assert "stream_url" in document["components"]["schemas"]["RunStarted"]["properties"]
    assert "stream_url" in document["components"]["schemas"]["RunAccepted"]["properties"]
    for path, accepted in (("/", "RunAccepted"), ("/v1/runs", "RunStarted")):
        responses = _operation(document, "post", path)["responses"]
        assert set(responses["200"]["content"]) == {"application/json", "text/event-stream"}
        assert _ref(responses["200"]["content"]["application/json"]) == "Run"
        assert _ref(responses["202"]["content"]["application/json"]) == accepted
        assert {"400", "409", "413", "415", "502"} <= set(responses)
    stream = _operation(document, "get", "/v1/runs/{run_id}/stream")["responses"]["200"]["content"]
    assert set(stream) == {"text/event-stream"}
    assert stream["text/event-stream"]["schema"]["required"] == ["event", "id", "data"]
    assert _ref(_operation(document, "get", "/v1/runs")["responses"]["200"]["content"]["application/json"]) == "RunPage"


def test_the_documented_shapes_are_what_the_views_return(document, app, owner):
    base = f"/apps/{app.id}"
    run = owner.post(f"{base}/v1/runs", {"input": {"question": "q"}}, format="json")
    assert run.status_code == 200, run.content
    data = run.json()
    assert set(data) == _properties(document, "Run")
    assert set(data["nodes"]["call"]) <= _properties(document, "NodeSummary")
    assert set(data["nodes"]["call"]["connection"]) == _properties(document, "NodeConnection")
    events = owner.get(f"{base}/v1/runs/{data['id']}/events").json()
    assert set(events) == _properties(document, "RunEventPage")
    assert all(set(event) == _properties(document, "RunEvent") for event in events["data"])
    accepted = owner.post(f"{base}/", {"input": {"question": "q"}, "execution_mode": "async"}, format="json")
    assert accepted.status_code == 202 and set(accepted.json()) == _properties(document, "RunAccepted")
    upload = owner.post(f"{base}/v1/files", {"file": _upload()}, format="multipart")
    assert set(upload.json()) == _properties(document, "File")
    status = owner.get(f"{base}/v1/requirements/status", {"user_id": "user-1"}).json()
    assert set(status) == _properties(document, "RequirementsStatus")
    cancel = owner.post(f"{base}/v1/runs/{data['id']}/cancel")
    assert set(cancel.json()) == _properties(document, "Cancel")


def _upload():
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("notes.txt", b"hello", content_type="text/plain")


@pytest.mark.parametrize("path", ["/", "/v1/runs"])
@pytest.mark.parametrize("body", ["[]", '"text"', "null", "42"])
def test_a_body_that_is_not_a_json_object_is_a_400(app, owner, path, body):
    """Found by the App-host fuzzer: a JSON array body was a 500 (AttributeError in the field check)."""
    response = owner.post(f"/apps/{app.id}{path}", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "bad_request"


def test_json_answers_are_labelled_json_when_an_event_stream_is_accepted(app, owner):
    """Found by the App-host fuzzer: `Accept: text/event-stream` (or `?format=sse`) labelled JSON answers
    (a run list, an error, a 202) `text/event-stream`."""
    base = f"/apps/{app.id}"
    listed = owner.get(f"{base}/v1/runs", HTTP_ACCEPT="text/event-stream")
    assert listed.status_code == 200 and listed["Content-Type"] == "application/json"
    assert listed.json()["pagination"]["total_count"] == 0
    refused = owner.post(f"{base}/v1/runs?format=sse", {"input": {}, "connections": {}}, format="json")
    assert refused.status_code == 400 and refused["Content-Type"] == "application/json"
    assert refused.json()["error"]["details"] == {"connections": ["unknown field"]}


@pytest.mark.parametrize(("method", "path", "status", "schema"), [
    ("post", "/", "200", "Run"),
    ("post", "/v1/runs", "200", "Run"),
    ("post", "/v1/runs", "202", "RunStarted"),
    ("get", "/v1/runs/{run_id}", "200", "Run"),
    ("post", "/v1/files", "201", "File"),
    ("get", "/v1/requirements/status", "200", "RequirementsStatus"),
])
def test_single_objects_on_the_app_host_are_documented_bare(document, method, path, status, schema):
    """SPEC section 6: the seed's `run["status"]` works, so a single object is the body itself."""
    content = _operation(document, method, path)["responses"][status]["content"]["application/json"]
    assert _ref(content) == schema
