"""Background runs on the thread executor: accepted (202, `created`), executed, events, cancel, recovery,
idempotency. These run on a database shared by the executor's threads (see conftest `shared_db`)."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.runs import dispatch, recovery
from apps.runs.models import CallbackDelivery, Run, RunEvent
from apps.runs.requests import RunRequest
from apps.runs.services import new_run
from tests.runs.conftest import make_http_app, wait_for
from tests.support.http_stub import HttpStub, echo


def post_runs(api_client, app, key, body, **extra):
    return api_client.post(f"/apps/{app.id}/v1/runs", body, format="json", HTTP_AUTHORIZATION=f"Bearer {key}", **extra)


def terminal(run_id):
    run = Run.objects.get(id=run_id)
    return run if run.is_terminal else None


def assert_events_well_formed(run_id):
    events = list(RunEvent.objects.filter(run_id=run_id).order_by("sequence"))
    sequences = [e.sequence for e in events]
    assert sequences == list(range(1, len(events) + 1))
    terminals = [e for e in events if e.type in ("run.completed", "run.failed", "run.canceled")]
    assert len(terminals) == 1 and terminals[0] is events[-1]
    return events


def test_a_background_run_is_accepted_then_completes(api_client, actors, thread_executor, upstream):
    app = make_http_app(actors["project"], f"{upstream.url}/bg")
    response = post_runs(api_client, app, actors["owner_key"], {"input": {"question": "hello"}, "background": True})
    assert response.status_code == 202, response.content
    data = response.json()
    assert data["status"] == "created" and data["output"] is None
    run = wait_for(lambda: terminal(data["id"]), message="run end")
    assert run.status == "completed" and run.mode == "background" and run.attempts == 1
    assert run.output["answer"]["query"] == {"q": ["hello"]}
    events = assert_events_well_formed(run.id)
    assert [e.type for e in events] == ["run.created", "run.started", "node.started", "node.completed", "node.started",
                                        "node.completed", "node.started", "node.completed", "run.completed"]
    listed = api_client.get(f"/apps/{app.id}/v1/runs/{run.id}/events", {"page_size": 4},
                            HTTP_AUTHORIZATION=f"Bearer {actors['owner_key']}")
    assert listed.status_code == 200
    body = listed.json()
    assert [e["sequence"] for e in body["data"]] == [1, 2, 3, 4]
    assert body["pagination"] == {"page": 1, "page_size": 4, "page_count": 3, "total_count": 9}
    assert set(body["data"][0]) == {"id", "type", "sequence", "timestamp", "data"}


def test_background_and_stream_together_are_refused(api_client, simple_app, owner_key):
    response = post_runs(api_client, simple_app, owner_key, {"input": {"question": "q"}, "background": True, "stream": True})
    assert response.status_code == 400


def test_background_input_is_checked_when_accepted(api_client, simple_app, owner_key):
    response = post_runs(api_client, simple_app, owner_key, {"input": {}, "background": True})
    assert response.status_code == 400
    assert not Run.objects.exists()


def test_a_repeat_with_the_same_idempotency_key_returns_the_first_run(api_client, simple_app, owner_key):
    body = {"input": {"question": "q"}, "background": True}
    first = post_runs(api_client, simple_app, owner_key, body, HTTP_IDEMPOTENCY_KEY="order-17")
    again = post_runs(api_client, simple_app, owner_key, body, HTTP_IDEMPOTENCY_KEY="order-17")
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    other = post_runs(api_client, simple_app, owner_key, body, HTTP_IDEMPOTENCY_KEY="order-18")
    assert other.json()["id"] != first.json()["id"]
    assert Run.objects.count() == 2


def test_async_invoke_is_idempotent_too(api_client, simple_app, owner_key):
    body = {"input": {"question": "q"}, "execution_mode": "async"}
    url = f"/apps/{simple_app.id}/"
    first = api_client.post(url, body, format="json", HTTP_AUTHORIZATION=f"Bearer {owner_key}", HTTP_IDEMPOTENCY_KEY="k1")
    again = api_client.post(url, body, format="json", HTTP_AUTHORIZATION=f"Bearer {owner_key}", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == again.status_code == 202
    # Each answer also carries a stream_url with a freshly minted token (SPEC.md section 12).
    assert {k: v for k, v in first.json().items() if k != "stream_url"} == {"id": first.json()["id"], "status": "accepted"}
    assert {k: v for k, v in again.json().items() if k != "stream_url"} == {"id": first.json()["id"], "status": "accepted"}
    assert f"/v1/runs/{first.json()['id']}/stream?token=" in again.json()["stream_url"]
    assert Run.objects.get().mode == "async"


def test_events_and_cancel_refuse_another_project(api_client, simple_app, owner_key, outsider_key):
    run = post_runs(api_client, simple_app, owner_key, {"input": {"question": "q"}, "background": True}).json()
    for path in ("events", "stream"):
        assert api_client.get(f"/apps/{simple_app.id}/v1/runs/{run['id']}/{path}",
                              HTTP_AUTHORIZATION=f"Bearer {outsider_key}").status_code == 403
    assert api_client.post(f"/apps/{simple_app.id}/v1/runs/{run['id']}/cancel",
                           HTTP_AUTHORIZATION=f"Bearer {outsider_key}").status_code == 403
    assert api_client.get(f"/apps/{simple_app.id}/v1/runs/{run['id']}/events").status_code == 401


def test_events_cancel_and_stream_refuse_the_wrong_method(api_client, simple_app, owner_key):
    run = post_runs(api_client, simple_app, owner_key, {"input": {"question": "q"}, "background": True}).json()
    base = f"/apps/{simple_app.id}/v1/runs/{run['id']}"
    auth = {"HTTP_AUTHORIZATION": f"Bearer {owner_key}"}
    assert api_client.post(f"{base}/events", **auth).status_code == 405
    assert api_client.post(f"{base}/stream", **auth).status_code == 405
    assert api_client.get(f"{base}/cancel", **auth).status_code == 405


def test_cancel_of_a_queued_run_ends_it_at_once_and_of_a_finished_one_is_a_no_op(api_client, simple_app, owner_key):
    run = post_runs(api_client, simple_app, owner_key, {"input": {"question": "q"}, "background": True}).json()
    url = f"/apps/{simple_app.id}/v1/runs/{run['id']}/cancel"
    response = api_client.post(url, HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 200 and response.json() == {"message": "canceled"}
    stored = Run.objects.get(id=run["id"])
    assert stored.status == "canceled" and stored.ended_at is not None
    assert list(stored.events.values_list("type", "sequence")) == [("run.created", 1), ("run.canceled", 2)]
    again = api_client.post(url, HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert again.status_code == 200
    assert stored.events.count() == 2  # nothing changed
    missing = api_client.post(f"/apps/{simple_app.id}/v1/runs/00000000-0000-0000-0000-000000000000/cancel",
                              HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert missing.status_code == 404


def test_cancel_during_a_slow_node_stops_the_run_before_the_next_node(api_client, actors, thread_executor):
    started = []

    def slow(request):
        started.append(request.path)
        time.sleep(1.0)
        return echo(request)

    with HttpStub(slow) as stub:
        from tests import factories

        workflow = factories.make_workflow(actors["project"], "slow-two-steps")
        version = factories.make_version(workflow, factories.definition(
            factories.http_node("first", ref=None, url=f"{stub.url}/first"),
            factories.http_node("second", ref=None, url=f"{stub.url}/second", depends_on=("first",)),
        ))
        app = factories.make_app(actors["project"], name="Slow", version=version)
        key = actors["owner_key"]
        run = post_runs(api_client, app, key, {"input": {"question": "q"}, "background": True}).json()
        wait_for(lambda: started, message="the slow node to start")
        response = api_client.post(f"/apps/{app.id}/v1/runs/{run['id']}/cancel", HTTP_AUTHORIZATION=f"Bearer {key}")
        assert response.status_code == 200
        stored = wait_for(lambda: terminal(run["id"]), message="run end")
    assert stored.status == "canceled"
    assert stored.error["code"] == "canceled"
    assert started == ["/first"]  # the second node never ran
    assert stored.nodes["second"]["status"] == "skipped"
    events = assert_events_well_formed(stored.id)
    assert events[-1].type == "run.canceled"


def _stranded_run(app, *, status, heartbeat_age=None, partial_events=()):
    """A run as a crashed process leaves it: persisted, never finished."""
    run = new_run(app=app, request=RunRequest(input={"question": "recovered"}, mode="background"))
    run.status = status
    if status == Run.Status.STARTED:
        run.attempts = 1
        run.started_at = timezone.now()
        run.heartbeat_at = timezone.now() - heartbeat_age
    run.save(force_insert=True)
    types = ["run.created", *(["run.started"] if status == Run.Status.STARTED else []), *partial_events]
    RunEvent.objects.bulk_create([RunEvent(run=run, sequence=i, type=t, data={}, timestamp=timezone.now())
                                  for i, t in enumerate(types, 1)])
    return run


def test_recovery_picks_up_runs_left_created_or_orphaned_by_a_crash(actors, thread_executor, upstream, settings):
    app = make_http_app(actors["project"], f"{upstream.url}/recover")
    created = [_stranded_run(app, status=Run.Status.CREATED) for _ in range(3)]
    orphaned = _stranded_run(app, status=Run.Status.STARTED, heartbeat_age=timedelta(minutes=5),
                             partial_events=["node.started"])
    live = _stranded_run(app, status=Run.Status.STARTED, heartbeat_age=timedelta(seconds=0))
    settings.RUNS_LEASE_SECONDS = 30
    # "Restart": a fresh executor in this process, and the entry point the server calls on its first request.
    dispatch.reset_executor()
    counts = recovery.recover()
    assert counts == {"runs": 5, "callbacks": 0}
    for run in [*created, orphaned]:
        done = wait_for(lambda run=run: terminal(run.id), message="recovered run end")
        assert done.status == "completed"
        assert_events_well_formed(run.id)
    assert [Run.objects.get(id=r.id).attempts for r in created] == [1, 1, 1]
    redone = Run.objects.get(id=orphaned.id)
    assert redone.attempts == 2
    types = list(redone.events.values_list("type", flat=True))
    assert types[:4] == ["run.created", "run.started", "node.started", "run.started"]  # the dead attempt's events stay
    assert redone.events.get(sequence=4).data == {"attempt": 2}
    # A run whose process still heartbeats is not taken over.
    time.sleep(0.3)
    assert Run.objects.get(id=live.id).status == "started" and Run.objects.get(id=live.id).attempts == 1
    assert len(upstream.requests) == 4
    dispatch.get_executor().shutdown(wait=False)


def test_the_recovery_sweep_queues_only_work_overdue_beyond_doubt(actors, thread_executor, upstream, settings):
    """The scheduler's periodic sweep (apps.scheduler job `runs.recovery_sweep`) while every process lives: a
    run left `created` longer than a sweep period (its message was lost) and a run whose heartbeat stopped
    are queued; a run just created (its message may still be queued) and a live one are left alone, and so
    is a callback not yet due, while one overdue by more than a sweep period is delivered."""
    settings.RUNS_LEASE_SECONDS = 30
    settings.RUNS_RECOVERY_SWEEP_SECONDS = 300
    app = make_http_app(actors["project"], f"{upstream.url}/sweep")
    lost = _stranded_run(app, status=Run.Status.CREATED)
    Run.objects.filter(id=lost.id).update(created_at=timezone.now() - timedelta(minutes=10))
    fresh = _stranded_run(app, status=Run.Status.CREATED)
    orphaned = _stranded_run(app, status=Run.Status.STARTED, heartbeat_age=timedelta(minutes=1))
    live = _stranded_run(app, status=Run.Status.STARTED, heartbeat_age=timedelta(seconds=0))
    with HttpStub() as hook:
        ended = _stranded_run(app, status=Run.Status.CREATED)
        Run.objects.filter(id=ended.id).update(status=Run.Status.COMPLETED, ended_at=timezone.now() - timedelta(hours=1))
        overdue = CallbackDelivery.objects.create(run=ended, url=f"{hook.url}/overdue", status="retrying", attempts=1,
                                                  next_attempt_at=timezone.now() - timedelta(minutes=10))
        CallbackDelivery.objects.create(run=ended, url=f"{hook.url}/later", status="retrying", attempts=1,
                                        next_attempt_at=timezone.now() + timedelta(minutes=10))

        assert recovery.recover_sweep() == {"runs": 2, "callbacks": 1}

        for run in (lost, orphaned):
            assert wait_for(lambda run=run: terminal(run.id), message="swept run end").status == "completed"
        wait_for(lambda: CallbackDelivery.objects.get(id=overdue.id).status == "delivered", message="overdue callback")
        thread_executor.shutdown(wait=True)
        assert [r.path for r in hook.requests] == ["/overdue"]
    assert Run.objects.get(id=fresh.id).status == "created"
    assert Run.objects.get(id=live.id).status == "started" and Run.objects.get(id=live.id).attempts == 1


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["manage.py", "runserver"], True),
        (["/srv/.venv/bin/gunicorn", "config.wsgi"], True),
        (["manage.py", "migrate"], False),
        (["manage.py", "recover_runs"], False),
        (["/srv/.venv/bin/pytest"], False),
        (["/srv/.venv/bin/celery", "-A", "config", "worker"], False),
    ],
)
def test_recovery_on_start_runs_only_in_server_processes(argv, expected, settings):
    settings.RUNS_RECOVER_ON_START = None
    assert recovery.is_server_process(argv) is expected
    settings.RUNS_RECOVER_ON_START = True
    assert recovery.is_server_process(["manage.py", "migrate"]) is True


def test_recover_runs_command_executes_pending_runs(actors, upstream, settings):
    from io import StringIO

    from django.core.management import call_command

    settings.RUNS_EXECUTOR = "thread"
    dispatch.reset_executor()
    app = make_http_app(actors["project"], f"{upstream.url}/cmd")
    run = _stranded_run(app, status=Run.Status.CREATED)
    out = StringIO()
    call_command("recover_runs", stdout=out)
    dispatch.reset_executor()
    assert "queued 1 run(s)" in out.getvalue()
    assert Run.objects.get(id=run.id).status == "completed"
