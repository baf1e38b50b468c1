"""Stream URLs (SPEC.md section 12): every answer that starts a run (background and async 202s, streams)
carries the run's SSE URL with a short-lived token scoped to that run, so a browser EventSource can follow
it without an Authorization header. The token opens that one run's stream and nothing else; tampered,
expired, or for another run or App: 401."""

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.utils import timezone

from apps.runs import stream_tokens
from apps.runs.models import Run
from tests import factories
from tests.runs.conftest import wait_for


def echo_app(project, name="Echo", **kwargs):
    workflow = factories.make_workflow(project, f"wf-{name}")
    version = factories.make_version(workflow, factories.definition(output={"q": "{{ input.question }}"}))
    return factories.make_app(project, name=name, version=version, **kwargs)


def events_of(response) -> list[str]:
    return [line[7:] for line in response.iter_lines() if line.startswith("event: ")]


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


@pytest.fixture
def started(live_url, actors, thread_executor):
    """A background run started over HTTP (no test client), with its answer."""
    app = echo_app(actors["project"])
    response = httpx.post(f"{live_url}/apps/{app.id}/v1/runs", json={"input": {"question": "hi"}, "background": True},
                          headers={"Authorization": f"Bearer {actors['owner_key']}"})
    assert response.status_code == 202, response.text
    run = response.json()
    wait_for(lambda: Run.objects.get(id=run["id"]).is_terminal, message="run end")
    return app, run


def test_a_background_run_carries_a_stream_url_that_needs_no_authorization(live_url, started):
    app, run = started
    url = run["stream_url"]
    assert url.startswith(f"{live_url}/apps/{app.id}/v1/runs/{run['id']}/stream?token=")
    with httpx.stream("GET", url, headers={"Accept": "text/event-stream"}, timeout=10) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        names = events_of(r)
    assert names[0] == "run.created" and names[-1] == "run.completed"


def test_async_invoke_and_streams_carry_it_too(live_url, actors, thread_executor):
    app = echo_app(actors["project"])
    auth = {"Authorization": f"Bearer {actors['owner_key']}"}
    accepted = httpx.post(f"{live_url}/apps/{app.id}/", json={"input": {"question": "a"}, "execution_mode": "async"},
                          headers=auth).json()
    assert set(accepted) == {"id", "status", "stream_url"} and accepted["id"] in accepted["stream_url"]
    wait_for(lambda: Run.objects.get(id=accepted["id"]).is_terminal, message="run end")
    with httpx.stream("GET", accepted["stream_url"], timeout=10) as r:
        assert events_of(r)[-1] == "run.completed"
    for path in ("v1/runs", ""):
        with httpx.stream("POST", f"{live_url}/apps/{app.id}/{path}", json={"input": {"question": "s"}, "stream": True},
                          headers=auth, timeout=10) as r:
            r.read()
            url = r.headers["X-Stream-Url"]
            assert f"/v1/runs/{r.headers['X-Run-Id']}/stream?token=" in url
        with httpx.stream("GET", url, timeout=10) as follow:
            assert follow.status_code == 200 and events_of(follow)[-1] == "run.completed"


def test_on_the_app_hostname_the_url_has_no_prefix(api_client, actors):
    app = echo_app(actors["project"])
    response = api_client.post("/v1/runs", {"input": {"question": "q"}, "background": True}, format="json",
                               HTTP_HOST=app.hostname, HTTP_AUTHORIZATION=f"Bearer {actors['owner_key']}")
    assert response.status_code == 202, response.content
    run = response.json()
    assert run["stream_url"].startswith(f"http://{app.hostname}/v1/runs/{run['id']}/stream?token=")


def test_tampered_expired_and_other_run_tokens_are_401(live_url, actors, started):
    app, run = started
    base = f"{live_url}/apps/{app.id}/v1/runs/{run['id']}/stream"
    token = token_of(run["stream_url"])
    other = httpx.post(f"{live_url}/apps/{app.id}/v1/runs", json={"input": {"question": "x"}, "background": True},
                       headers={"Authorization": f"Bearer {actors['owner_key']}"}).json()
    expired = stream_tokens.mint(app_id=app.id, run_id=run["id"], now=timezone.now() - timedelta(hours=1))
    head, payload, signature = token.split(".")
    tampered = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    for bad in (tampered, expired, token_of(other["stream_url"]), "", "garbage", token + "x"):
        response = httpx.get(base, params={"token": bad}, timeout=10)
        assert response.status_code == 401, (bad, response.text)
        assert response.json()["error"]["code"] == "unauthorized"


def test_the_token_opens_nothing_but_that_stream(live_url, started):
    app, run = started
    token = token_of(run["stream_url"])
    base = f"{live_url}/apps/{app.id}/v1"
    assert httpx.get(f"{base}/runs/{run['id']}", params={"token": token}).status_code == 401
    assert httpx.get(f"{base}/runs/{run['id']}/events", params={"token": token}).status_code == 401
    assert httpx.post(f"{base}/runs/{run['id']}/cancel", params={"token": token}).status_code == 401
    assert httpx.get(f"{base}/runs", params={"token": token}).status_code == 401
    assert httpx.post(f"{base}/runs", params={"token": token}, json={"input": {"question": "q"}}).status_code == 401
    assert httpx.get(f"{base}/requirements/status", params={"token": token, "user_id": "u"}).status_code == 401
    # Nor as a bearer token anywhere.
    assert httpx.get(f"{base}/runs/{run['id']}/stream", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert httpx.get(f"{live_url}/v1/apps", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_cross_tenant_runs_and_apps_refuse_the_token(live_url, actors, started):
    app, run = started
    token = token_of(run["stream_url"])
    theirs = echo_app(actors["outsider_project"], name="Theirs")
    their_run = httpx.post(f"{live_url}/apps/{theirs.id}/v1/runs", json={"input": {"question": "t"}, "background": True},
                           headers={"Authorization": f"Bearer {actors['outsider_key']}"}).json()
    # My token on their App, for my run or theirs; their run's ID on my App with my token.
    assert httpx.get(f"{live_url}/apps/{theirs.id}/v1/runs/{run['id']}/stream", params={"token": token}).status_code == 401
    assert httpx.get(f"{live_url}/apps/{theirs.id}/v1/runs/{their_run['id']}/stream",
                     params={"token": token}).status_code == 401
    assert httpx.get(f"{live_url}/apps/{app.id}/v1/runs/{their_run['id']}/stream", params={"token": token}).status_code == 401
    # Their own token does not open my App's URL either.
    assert httpx.get(f"{live_url}/apps/{app.id}/v1/runs/{their_run['id']}/stream",
                     params={"token": token_of(their_run["stream_url"])}).status_code == 401
