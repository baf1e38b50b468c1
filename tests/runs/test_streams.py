"""Server-Sent Events read with a streaming HTTP client (httpx) from a live server: run event streams
(order, resume, heartbeat, close), stream mode of the runs API, invoke streaming of LLM deltas, cancel
during an LLM stream."""

import json
import time

import httpx
import pytest

from apps.runs.models import Run, RunEvent
from apps.runs.requests import RunRequest
from apps.runs.services import new_run
from tests import factories
from tests.conftest import assert_no_canary
from tests.runs.conftest import StreamingLlmStub, make_http_app, make_llm_app, wait_for
from tests.support.http_stub import HttpStub, echo


def read_sse(response):
    """Parse an SSE response into frames: {"event", "id", "data"} dicts, and "heartbeat" markers."""
    frames, current = [], {}
    for line in response.iter_lines():
        if line == "":
            if current:
                frames.append(current)
                current = {}
            continue
        if line.startswith(":"):
            frames.append("heartbeat")
            continue
        name, _, value = line.partition(": ")
        current[name] = json.loads(value) if name == "data" else value
    return frames


def auth(key):
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def finished_run(api_client, actors, thread_executor, upstream):
    app = make_http_app(actors["project"], f"{upstream.url}/s")
    response = api_client.post(f"/apps/{app.id}/v1/runs", {"input": {"question": "q"}, "background": True}, format="json",
                               HTTP_AUTHORIZATION=f"Bearer {actors['owner_key']}")
    run_id = response.json()["id"]
    wait_for(lambda: Run.objects.get(id=run_id).is_terminal, message="run end")
    return app, run_id


def test_the_stream_replays_events_in_order_and_closes_after_the_terminal_one(live_url, actors, finished_run):
    app, run_id = finished_run
    url = f"{live_url}/apps/{app.id}/v1/runs/{run_id}/stream"
    with httpx.stream("GET", url, headers={**auth(actors["owner_key"]), "Accept": "text/event-stream"}, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        frames = read_sse(r)  # returns only because the server closed the stream
    stored = list(RunEvent.objects.filter(run_id=run_id).order_by("sequence"))
    assert [f["id"] for f in frames] == [str(e.sequence) for e in stored]
    assert [f["event"] for f in frames] == [e.type for e in stored]
    assert frames[-1]["event"] == "run.completed"
    assert frames[-1]["data"]["data"]["output"]["answer"]["query"] == {"q": ["q"]}
    assert frames[0]["data"]["sequence"] == 1 and set(frames[0]["data"]) == {"id", "type", "sequence", "timestamp", "data"}


@pytest.mark.parametrize("after", [0, 3, 8, 9])
def test_resuming_after_any_sequence_loses_and_repeats_nothing(live_url, actors, finished_run, after):
    app, run_id = finished_run
    total = RunEvent.objects.filter(run_id=run_id).count()
    with httpx.stream("GET", f"{live_url}/apps/{app.id}/v1/runs/{run_id}/stream", params={"after_sequence": after},
                      headers=auth(actors["owner_key"]), timeout=10) as r:
        frames = read_sse(r)
    assert [int(f["id"]) for f in frames] == list(range(after + 1, total + 1))


def test_after_sequence_must_be_a_non_negative_integer(live_url, actors, finished_run):
    app, run_id = finished_run
    for bad in ("-1", "x"):
        r = httpx.get(f"{live_url}/apps/{app.id}/v1/runs/{run_id}/stream", params={"after_sequence": bad},
                      headers=auth(actors["owner_key"]))
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


def test_an_idle_stream_sends_heartbeats_then_follows_the_run_to_its_end(live_url, actors, settings, upstream):
    settings.SSE_HEARTBEAT_SECONDS = 0.3
    app = make_http_app(actors["project"], f"{upstream.url}/idle")
    run = new_run(app=app, request=RunRequest(input={"question": "q"}, mode="background"))
    run.save(force_insert=True)  # queued, but no executor picks it up: the stream idles
    RunEvent.objects.create(run=run, sequence=1, type="run.created", data={}, timestamp=run.created_at)
    frames = []
    started = time.monotonic()
    with httpx.stream("GET", f"{live_url}/apps/{app.id}/v1/runs/{run.id}/stream", params={"after_sequence": 1},
                      headers=auth(actors["owner_key"]), timeout=10) as r:
        lines = r.iter_lines()
        for line in lines:
            if line == ": heartbeat":
                frames.append((time.monotonic() - started, "heartbeat"))
                if len(frames) == 2:
                    httpx.post(f"{live_url}/apps/{app.id}/v1/runs/{run.id}/cancel", headers=auth(actors["owner_key"]))
            elif line.startswith("event: "):
                frames.append((time.monotonic() - started, line[7:]))
    names = [name for _, name in frames]
    # Heartbeats while idle, then the run's end. How many heartbeats fit between the cancel request and its
    # event depends on load (the interval is 0.3 s), so only the shape is exact.
    assert names[:2] == ["heartbeat", "heartbeat"] and set(names[2:-1]) <= {"heartbeat"}, names
    assert names[-1] == "run.canceled", names
    # Not before its interval (a lower bound holds under any load; an upper bound on wall-clock time does not).
    assert frames[0][0] >= 0.25


def test_stream_mode_answers_the_run_events_as_they_happen(live_url, actors, thread_executor):
    def slow(request):
        time.sleep(0.3)
        return echo(request)

    with HttpStub(slow) as stub:
        app = make_http_app(actors["project"], f"{stub.url}/live")
        with httpx.stream("POST", f"{live_url}/apps/{app.id}/v1/runs", json={"input": {"question": "hi"}, "stream": True},
                          headers=auth(actors["owner_key"]), timeout=10) as r:
            assert r.status_code == 200
            run_id = r.headers["X-Run-Id"]
            frames = read_sse(r)
    stored = list(RunEvent.objects.filter(run_id=run_id).order_by("sequence"))
    assert [(f["event"], int(f["id"])) for f in frames] == [(e.type, e.sequence) for e in stored]
    assert frames[0]["event"] == "run.created" and frames[0]["data"]["data"]["run_id"] == run_id
    assert frames[-1]["event"] == "run.completed"
    assert Run.objects.get(id=run_id).mode == "stream"


def test_invoke_streams_llm_deltas_then_the_whole_output(live_url, actors):
    tokens = ["Your ", "latest ", "invoice ", "is ", "paid."]
    with StreamingLlmStub(tokens, delay=0.02) as llm:
        app = make_llm_app(actors["project"], llm.url)
        with httpx.stream("POST", f"{live_url}/apps/{app.id}/", json={"input": {"question": "status?"}, "stream": True},
                          headers=auth(actors["owner_key"]), timeout=10) as r:
            assert r.status_code == 200
            raw = b"".join(r.iter_raw())
    frames = [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]
    deltas = [f["data"]["choices"][0]["delta"]["content"] for f in frames[:-1]]
    assert deltas == tokens
    assert all(f["event"] == "data" for f in frames)
    final = frames[-1]["data"]
    assert final["status"] == "completed" and final["output"] == {"answer": "".join(tokens)} and final["error"] is None
    assert llm.requests[0]["stream"] is True
    assert llm.authorizations == [f"Bearer {factories.CANARIES['openai_key']}"]
    assert_no_canary(raw)
    run = Run.objects.get(id=final["id"])
    assert run.status == "completed" and run.events.filter(type="llm.delta").count() == len(tokens)


def test_cancel_during_an_llm_stream_stops_it(live_url, actors):
    tokens = [f"t{i} " for i in range(40)]
    with StreamingLlmStub(tokens, delay=0.1) as llm:
        app = make_llm_app(actors["project"], llm.url)
        with httpx.stream("POST", f"{live_url}/apps/{app.id}/v1/runs", json={"input": {"question": "long"}, "stream": True},
                          headers=auth(actors["owner_key"]), timeout=10) as r:
            run_id = r.headers["X-Run-Id"]
            seen = []
            for line in r.iter_lines():
                if line.startswith("event: "):
                    seen.append(line[7:])
                    if seen.count("llm.delta") == 3:
                        httpx.post(f"{live_url}/apps/{app.id}/v1/runs/{run_id}/cancel", headers=auth(actors["owner_key"]))
    assert seen[-1] == "run.canceled"
    assert 3 <= seen.count("llm.delta") < len(tokens)
    run = Run.objects.get(id=run_id)
    assert run.status == "canceled" and run.nodes["chat"]["status"] == "failure"
    assert run.nodes["output"]["status"] == "skipped"


def test_a_stream_for_an_unlinked_user_answers_409_like_a_sync_run(live_url, actors):
    project = actors["project"]
    workflow = factories.make_workflow(project, "needs-link")
    requirement = factories.make_requirement(workflow)
    version = factories.make_version(workflow, factories.definition(
        factories.http_node("mine", ref={"requirement": str(requirement.id)}, url="http://127.0.0.1:9/x")))
    app = factories.make_app(project, name="Needs link", version=version)
    r = httpx.post(f"{live_url}/apps/{app.id}/v1/runs", json={"input": {"question": "q"}, "stream": True, "user_id": "u-1"},
                   headers=auth(actors["owner_key"]), timeout=10)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "requirements_unsatisfied"
    assert Run.objects.get(id=r.json()["error"]["details"]["run_id"]).status == "failed"
