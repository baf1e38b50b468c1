"""A run's outcome and timestamps (SPEC.md section 15) in every mode: a run whose output node was skipped
because a node failed ends `failed` with `node_failed` naming that node, answered 200 (sync) unless the request
asked for `error_on_node_failure` (502); `created_at <= started_at <= ended_at`."""

import httpx
import pytest

from apps.runs.models import Run, RunEvent
from tests import factories
from tests.runs.conftest import make_http_app, wait_for
from tests.runs.test_streams import read_sse
from tests.support.http_stub import HttpStub, StubResponse


def failing_upstream(request):
    return StubResponse(500, {"detail": "upstream broke"})


def post_runs(client, app, key, body):
    return client.post(f"/apps/{app.id}/v1/runs", body, format="json", HTTP_AUTHORIZATION=f"Bearer {key}")


def assert_node_failed(error: dict, node_id: str = "call", type: str = "http_error") -> None:
    assert error["code"] == "node_failed"
    assert (error["node_id"], error["type"]) == (node_id, type)
    assert error["message"].startswith(f"Node {node_id} failed: ")
    assert error["details"] == {"node_id": node_id, "type": type}


def assert_ordered_timestamps(run: Run) -> None:
    assert run.created_at <= run.started_at <= run.ended_at, (run.created_at, run.started_at, run.ended_at)


@pytest.mark.django_db
def test_a_sync_run_whose_output_was_skipped_fails_with_node_failed(api_client, project, owner_key):
    with HttpStub(failing_upstream) as stub:
        app = make_http_app(project, f"{stub.url}/call")
        response = post_runs(api_client, app, owner_key, {"input": {"question": "q"}})
    assert response.status_code == 200, response.content
    run = response.json()
    assert (run["status"], run["output"]) == ("failed", None)
    assert_node_failed(run["error"])
    assert run["nodes"]["output"]["status"] == "skipped"
    events = list(RunEvent.objects.filter(run_id=run["id"]).order_by("sequence"))
    assert events[-1].type == "run.failed"
    assert events[-1].data["error"]["code"] == "node_failed"


@pytest.mark.django_db
def test_error_on_node_failure_answers_502_with_the_failed_run_stored(api_client, project, owner_key):
    with HttpStub(failing_upstream) as stub:
        app = make_http_app(project, f"{stub.url}/call")
        response = post_runs(api_client, app, owner_key, {"input": {"question": "q"}, "error_on_node_failure": True})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "node_failed"
    assert error["details"]["node_id"] == "call"
    run = Run.objects.get(id=error["details"]["run_id"])
    assert run.status == "failed"
    assert_node_failed(run.error)


@pytest.mark.django_db
def test_a_failure_off_the_output_path_still_completes(api_client, project, owner_key):
    with HttpStub(failing_upstream) as stub:
        workflow = factories.make_workflow(project, "side-branch")
        version = factories.make_version(workflow, {"nodes": [
            {"id": "input", "type": "input", "fields": {"question": {"type": "string"}}},
            {"id": "side", "type": "http", "depends_on": ["input"], "config": {"url": f"{stub.url}/side"}},
            {"id": "main", "type": "template", "depends_on": ["input"], "config": {"template": "ok"}},
            {"id": "output", "type": "output", "depends_on": ["main"],
             "fields": {"text": "{{ nodes.main.output.text }}"}},
        ]})
        app = factories.make_app(project, name="Side branch", version=version)
        response = post_runs(api_client, app, owner_key, {"input": {"question": "q"}})
    run = response.json()
    assert response.status_code == 200
    assert run["nodes"]["side"]["status"] == "failure"
    assert (run["status"], run["output"], run["error"]) == ("completed", {"text": "ok"}, None)


@pytest.mark.django_db
def test_a_sync_run_is_created_before_it_starts_and_ends(api_client, project, owner_key, upstream):
    app = make_http_app(project, f"{upstream.url}/call")
    response = post_runs(api_client, app, owner_key, {"input": {"question": "q"}})
    assert response.status_code == 200
    run = Run.objects.get(id=response.json()["id"])
    assert run.status == "completed"
    assert_ordered_timestamps(run)
    body = response.json()
    assert body["created_at"] <= body["started_at"] <= body["ended_at"]


@pytest.mark.django_db
def test_a_failed_sync_run_has_ordered_timestamps(api_client, project, owner_key):
    with HttpStub(failing_upstream) as stub:
        app = make_http_app(project, f"{stub.url}/call")
        response = post_runs(api_client, app, owner_key, {"input": {"question": "q"}})
    assert_ordered_timestamps(Run.objects.get(id=response.json()["id"]))


def test_a_background_run_whose_output_was_skipped_fails_with_node_failed(api_client, actors, thread_executor):
    with HttpStub(failing_upstream) as stub:
        app = make_http_app(actors["project"], f"{stub.url}/call")
        response = post_runs(api_client, app, actors["owner_key"], {"input": {"question": "q"}, "background": True})
        assert response.status_code == 202
        run = wait_for(lambda: Run.objects.filter(id=response.json()["id"], ended_at__isnull=False).first(),
                       message="run end")
    assert (run.status, run.output) == ("failed", None)
    assert_node_failed(run.error)
    assert_ordered_timestamps(run)
    polled = api_client.get(f"/apps/{app.id}/v1/runs/{run.id}", HTTP_AUTHORIZATION=f"Bearer {actors['owner_key']}")
    assert polled.json()["error"]["code"] == "node_failed"


def test_a_streamed_run_whose_output_was_skipped_ends_with_run_failed(live_url, actors):
    with HttpStub(failing_upstream) as stub:
        app = make_http_app(actors["project"], f"{stub.url}/call")
        with httpx.stream("POST", f"{live_url}/apps/{app.id}/v1/runs", json={"input": {"question": "q"}, "stream": True},
                          headers={"Authorization": f"Bearer {actors['owner_key']}"}, timeout=10) as response:
            assert response.status_code == 200
            run_id = response.headers["X-Run-Id"]
            frames = read_sse(response)
    assert frames[-1]["event"] == "run.failed"
    assert_node_failed(frames[-1]["data"]["data"]["error"])
    run = Run.objects.get(id=run_id)
    assert run.status == "failed"
    assert_ordered_timestamps(run)
