"""No outbound state crosses runs (SPEC 12): an upstream's Set-Cookie is never stored beyond the response
that set it, so it can neither ride along in another tenant's run to the same host nor be replayed on the
next redirect hop of the same request. Every client the platform calls out with is checked."""

from types import SimpleNamespace

import pytest

from apps.connections import oauth_client
from apps.credentials.resolvers import HttpResolver
from apps.engine import make_http_client
from apps.runs.callbacks import callback_client
from apps.runs.http import guarded_client, http_client
from apps.runs.models import Run
from tests import factories
from tests.support.http_stub import HttpStub, StubResponse, echo

pytestmark = pytest.mark.django_db

TENANT_A_COOKIE = "tenant-a-session-5d1e8c0f7b"
HOP_COOKIE = "redirect-hop-cookie-93ab27c4e1"


def post_run(client, app, key):
    return client.post(f"/apps/{app.id}/v1/runs", {"input": {"question": "q"}}, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {key}")


def cookie_setting_upstream(request):
    """Sets a session cookie on /login; echoes everything else (so a replayed Cookie would show)."""
    if request.path == "/login":
        return StubResponse(200, {"logged_in": True}, {"Set-Cookie": f"session={TENANT_A_COOKIE}; Path=/"})
    if request.path == "/hop":
        return StubResponse(302, {}, {"Location": "/final", "Set-Cookie": f"hop={HOP_COOKIE}; Path=/"})
    return echo(request)


def tenant_app(org: str, name: str, url: str):
    project = factories.make_project(org, name)
    workflow = factories.make_workflow(project, f"{name.lower()}-flow")
    version = factories.make_version(workflow, factories.definition(factories.http_node("call", ref=None, url=url)))
    return factories.make_app(project, name=f"{name} app", version=version), factories.make_key(project, name="owner")


def stored_text(run_id) -> str:
    run = Run.objects.get(id=run_id)
    return str(run.output) + str(run.nodes) + str(run.error) + str(list(run.events.values_list("data", flat=True)))


def test_a_cookie_set_in_tenant_a_run_is_not_sent_in_tenant_b_run(client):
    with HttpStub(cookie_setting_upstream) as upstream:
        app_a, key_a = tenant_app("Tenant A", "Alpha", f"{upstream.url}/login")
        app_b, key_b = tenant_app("Tenant B", "Beta", f"{upstream.url}/whoami")
        first = post_run(client, app_a, key_a)
        second = post_run(client, app_b, key_b)
    assert first.status_code == 200 and second.status_code == 200, (first.content, second.content)
    assert [r.path for r in upstream.requests] == ["/login", "/whoami"]
    assert "Cookie" not in upstream.requests[1].headers and "cookie" not in upstream.requests[1].headers
    assert TENANT_A_COOKIE not in second.content.decode()
    assert TENANT_A_COOKIE not in stored_text(second.json()["id"])


def test_a_cookie_set_on_a_redirect_hop_is_not_replayed_on_the_next_hop(client):
    with HttpStub(cookie_setting_upstream) as upstream:
        app, key = tenant_app("Tenant C", "Gamma", f"{upstream.url}/hop")
        response = post_run(client, app, key)
    assert response.status_code == 200, response.content
    assert [r.path for r in upstream.requests] == ["/hop", "/final"]
    assert "Cookie" not in upstream.requests[1].headers
    assert HOP_COOKIE not in stored_text(response.json()["id"])


def _oauth_client():
    provider = SimpleNamespace(client_id="cid", client_secret="csecret")
    return oauth_client.client(provider)


CLIENT_FACTORIES = {
    "make_http_client": lambda: make_http_client(allow_private=True, timeout=5.0),
    "runs.http_client (http and llm nodes)": http_client,
    "runs.guarded_client(no redirects)": lambda: guarded_client(follow_redirects=False, timeout=5.0),
    "callbacks.callback_client": callback_client,
    "connections.oauth_client.client": _oauth_client,
    "credentials.HttpResolver": lambda: HttpResolver(base_url="http://127.0.0.1:1", token="t")._client,
}


@pytest.mark.parametrize("factory", CLIENT_FACTORIES.values(), ids=CLIENT_FACTORIES.keys())
def test_every_outbound_client_keeps_no_cookie(factory):
    client = factory()
    extra = {"withhold_token": True} if hasattr(client, "fetch_token") else {}  # authlib wants a token
    with HttpStub(cookie_setting_upstream) as upstream:
        login = client.request("GET", f"{upstream.url}/login", **extra)
        assert login.cookies.get("session") == TENANT_A_COOKIE  # the response itself still shows it
        client.request("GET", f"{upstream.url}/again", **extra)
        hop = client.request("GET", f"{upstream.url}/hop", follow_redirects=True, **extra)
    assert hop.status_code == 200
    assert [r.path for r in upstream.requests] == ["/login", "/again", "/hop", "/final"]
    for request in upstream.requests:
        assert "Cookie" not in request.headers
    assert not client.cookies
    assert client.auth is None
    assert "authorization" not in client.headers and "cookie" not in client.headers


@pytest.mark.parametrize("shared_state", [{"auth": ("user", "pw")}, {"headers": {"X-Run": "1"}},
                                          {"cookies": {"a": "b"}}])
def test_a_shared_client_refuses_client_level_auth_headers_and_cookies(shared_state):
    from apps.engine.netguard import StatelessClient

    with pytest.raises(ValueError):
        StatelessClient(**shared_state)
    client = StatelessClient()
    client.cookies = {}  # an empty jar is what it has anyway
    with pytest.raises(ValueError):
        client.cookies = {"a": "b"}
