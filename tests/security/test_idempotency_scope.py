"""Idempotency keys are scoped to the caller (SPEC.md section 12): (App, access key or anonymous, user_id,
endpoint). Within a scope the same body gets the first run back and another body a 422
`idempotency_key_reused`; across scopes a key means nothing (a new run), so one caller's key never hands
another caller a run, its input, output or stream."""

import json

import pytest

from apps.deployments.models import App
from apps.runs.models import Run
from tests import factories

pytestmark = pytest.mark.django_db

KEY = "order-17"


def echo_app(project, name="Echo", **kwargs):
    workflow = factories.make_workflow(project, f"wf-{name}")
    version = factories.make_version(workflow, factories.definition(output={"q": "{{ input.question }}"}))
    return factories.make_app(project, name=name, version=version, **kwargs)


def post(client, app, body, *, key=None, path="v1/runs", idem=KEY):
    headers = {"HTTP_IDEMPOTENCY_KEY": idem}
    if key:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client.post(f"/apps/{app.id}/{path}", body, format="json", **headers)


def run_id(response) -> str:
    if response.get("Content-Type", "").startswith("text/event-stream"):
        b"".join(response.streaming_content)  # let the stream end
        return response["X-Run-Id"]
    body = response.json()
    return body["id"]


@pytest.fixture
def app(project):
    return echo_app(project)


def test_another_user_id_with_the_same_key_gets_its_own_run(api_client, app, owner_key):
    alice = post(api_client, app, {"input": {"question": "alice's secret"}, "user_id": "alice"}, key=owner_key)
    bob = post(api_client, app, {"input": {"question": "bob"}, "user_id": "bob"}, key=owner_key)
    assert alice.status_code == bob.status_code == 200, bob.content
    assert run_id(alice) != run_id(bob)
    assert b"alice" not in bob.content
    assert bob.json()["user_id"] == "bob" and bob.json()["output"] == {"q": "bob"}


def test_another_access_key_with_the_same_key_gets_its_own_run(api_client, app, project, owner_key):
    other_key = factories.make_key(project, name="second")
    body = {"input": {"question": "q"}}
    first, second = post(api_client, app, body, key=owner_key), post(api_client, app, body, key=other_key)
    assert first.status_code == second.status_code == 200
    assert run_id(first) != run_id(second)
    assert run_id(post(api_client, app, body, key=owner_key)) == run_id(first)  # each key keeps its own


def test_anonymous_and_keyed_callers_of_a_public_app_do_not_share_keys(api_client, project, owner_key):
    public = echo_app(project, name="Public", access_type=App.AccessType.PUBLIC)
    keyed = post(api_client, public, {"input": {"question": "keyed secret"}}, key=owner_key)
    anonymous = post(api_client, public, {"input": {"question": "anon"}})
    assert keyed.status_code == anonymous.status_code == 200, anonymous.content
    assert run_id(keyed) != run_id(anonymous)
    assert b"keyed secret" not in anonymous.content
    again = post(api_client, public, {"input": {"question": "anon"}})
    assert run_id(again) == run_id(anonymous)


def test_invoke_and_runs_do_not_share_keys(api_client, app, owner_key):
    body = {"input": {"question": "q"}}
    runs = post(api_client, app, body, key=owner_key)
    invoke = post(api_client, app, body, key=owner_key, path="")
    assert runs.status_code == invoke.status_code == 200
    assert run_id(runs) != run_id(invoke)
    assert Run.objects.count() == 2


def test_another_project_with_the_same_key_on_its_own_app_gets_its_own_run(api_client, app, owner_key,
                                                                              outsider_project, outsider_key):
    theirs = echo_app(outsider_project, name="Theirs")
    mine = post(api_client, app, {"input": {"question": "mine"}}, key=owner_key)
    other = post(api_client, theirs, {"input": {"question": "theirs"}}, key=outsider_key)
    assert mine.status_code == other.status_code == 200
    assert run_id(mine) != run_id(other) and other.json()["app_id"] == str(theirs.id)
    # And the key does not open the other App's run either way: the outsider's key is refused on mine.
    assert post(api_client, app, {"input": {"question": "mine"}}, key=outsider_key).status_code == 403


MODES = {
    "sync": ("v1/runs", {}),
    "background": ("v1/runs", {"background": True}),
    "stream": ("v1/runs", {"stream": True}),
    "invoke-sync": ("", {}),
    "invoke-async": ("", {"execution_mode": "async"}),
    "invoke-stream": ("", {"stream": True}),
}


# `thread_executor` waits at teardown for the background/async run these start: a run still executing
# while the database is flushed deadlocks the flush on PostgreSQL.
@pytest.mark.parametrize("mode", MODES)
def test_the_same_body_in_the_same_scope_gets_the_first_run(api_client, actors, thread_executor, mode):
    app = echo_app(actors["project"], name=f"Modes {mode}")
    path, extra = MODES[mode]
    body = {"input": {"question": "q"}, **extra}
    first = post(api_client, app, body, key=actors["owner_key"], path=path)
    again = post(api_client, app, body, key=actors["owner_key"], path=path)
    assert first.status_code == again.status_code and first.status_code in (200, 202), first.content
    assert run_id(first) == run_id(again)
    assert Run.objects.filter(app=app).count() == 1


@pytest.mark.parametrize("mode", MODES)
def test_another_body_in_the_same_scope_is_a_422(api_client, actors, thread_executor, mode):
    app = echo_app(actors["project"], name=f"Reuse {mode}")
    path, extra = MODES[mode]
    first = post(api_client, app, {"input": {"question": "q"}, **extra}, key=actors["owner_key"], path=path)
    run_id(first)
    reused = post(api_client, app, {"input": {"question": "other"}, **extra}, key=actors["owner_key"], path=path)
    assert reused.status_code == 422, reused.content
    error = reused.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert "other" not in json.dumps(error) and "q" not in json.dumps(error.get("details", {}).get("input", ""))
    assert Run.objects.filter(app=app).count() == 1


def test_a_repeat_with_other_uploads_is_a_422_and_stores_nothing(api_client, app, owner_key, settings, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apps.runs.models import File

    settings.MEDIA_ROOT = str(tmp_path / "media")

    def send(content):
        return api_client.post(f"/apps/{app.id}/v1/runs", {"input": json.dumps({"question": "q"}),
                               "files": [SimpleUploadedFile("a.txt", content, "text/plain")]}, format="multipart",
                               HTTP_AUTHORIZATION=f"Bearer {owner_key}", HTTP_IDEMPOTENCY_KEY=KEY)

    first = send(b"alpha")
    assert first.status_code == 200, first.content
    assert run_id(send(b"alpha")) == run_id(first)
    assert File.objects.count() == 1  # the repeat's upload was not stored again
    assert send(b"bravo").status_code == 422
    assert File.objects.count() == 1


def test_the_24_hour_window_still_holds_within_a_scope(api_client, app, owner_key):
    from datetime import timedelta

    from django.utils import timezone

    first = post(api_client, app, {"input": {"question": "q"}}, key=owner_key)
    Run.objects.filter(id=run_id(first)).update(created_at=timezone.now() - timedelta(hours=25))
    later = post(api_client, app, {"input": {"question": "other body, new day"}}, key=owner_key)
    assert later.status_code == 200 and run_id(later) != run_id(first)
    assert Run.objects.get(id=run_id(first)).idempotency_key == ""  # the old holder let go of the key


def test_a_race_in_the_same_scope_ends_with_the_first_run(app, monkeypatch):
    """Two accepts with one key: the second misses the first (not yet visible), hits the scoped unique
    constraint, and answers with the first run; in another scope the same race is two runs."""
    from apps.runs import services
    from apps.runs.requests import RunRequest, idempotency_scope

    scope = idempotency_scope(access_key_id="k1", user_id="alice", endpoint="runs")
    request = RunRequest(input={"question": "q"}, mode="background", idempotency_key=KEY, idempotency_scope=scope)
    first, _ = services.run_accept(app=app, request=request)
    original = services.idempotent_run
    calls = {"n": 0}

    def not_yet_visible(*, app, request):
        calls["n"] += 1
        return None if calls["n"] == 1 else original(app=app, request=request)

    monkeypatch.setattr(services, "idempotent_run", not_yet_visible)
    second, replayed = services.run_accept(app=app, request=RunRequest(
        input={"question": "q"}, mode="background", idempotency_key=KEY, idempotency_scope=scope))
    assert replayed and second.id == first.id
    calls["n"] = 0
    bob = RunRequest(input={"question": "q"}, mode="background", idempotency_key=KEY,
                     idempotency_scope=idempotency_scope(access_key_id="k1", user_id="bob", endpoint="runs"))
    third, replayed = services.run_accept(app=app, request=bob)
    assert not replayed and third.id != first.id
