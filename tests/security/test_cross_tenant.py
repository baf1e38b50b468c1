"""Cross-tenant matrix for connect tokens and files (issue 9: "the cross-tenant matrix extended").

Tenants: App A (project Acme/Billing) and App B (project Acme/Support, same organization: the closest
neighbour); user `alice` is linked in both. A connect token minted for (A, alice) must not list, link,
authorize or unlink anything of B, must not work on any App host, and B's project key must not mint for
A. A file uploaded to A is unusable by B (every run entry point) and another project cannot upload to A.
Each case also checks that nothing of B changed, not only the status code.
"""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.connect.models import EndUserLink
from apps.connections.models import Connection, OAuthState
from apps.runs.models import File, Run
from tests import factories
from tests.connect.conftest import bearer, build_connect_setup, connect_token

pytestmark = pytest.mark.django_db

ALICE = "alice"
B_KEY = "canary-b-alice-key-4e7f01aa93"


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def tenants(project, teammate_project):
    a = build_connect_setup(project)
    b = build_connect_setup(teammate_project, app_name="Support bot", workflow_name="support")
    factories.link_end_user(b.app, b.billing, ALICE, {"url": "https://billing.example.com", "api_key": B_KEY})
    return a, b


def _b_untouched(b) -> None:
    link = EndUserLink.objects.select_related("connection").get(app=b.app, user_id=ALICE)
    assert link.connection.config["api_key"] == B_KEY
    assert EndUserLink.objects.filter(app=b.app).count() == 1
    assert not OAuthState.objects.filter(app=b.app).exists()
    assert Connection.objects.filter(app=b.app).count() == 1


# ------------------------------------------------------------------------------------ connect tokens

CONNECT_CALLS = {
    "link": ("post", "/v1/connect/requirements/{req}/credentials",
             {"type": "http_api_key", "config": {"url": "https://evil.example.com", "api_key": "stolen-key-123"}}),
    "authorize": ("post", "/v1/connect/requirements/{req}/oauth2/authorize", {}),
    "unlink": ("delete", "/v1/connect/requirements/{req}/connection", None),
}


@pytest.mark.parametrize("call", sorted(CONNECT_CALLS))
@pytest.mark.parametrize("requirement", ["billing", "crm"])
def test_a_token_of_app_a_cannot_act_on_app_b_requirements(api_client, tenants, call, requirement):
    a, b = tenants
    method, path, body = CONNECT_CALLS[call]
    response = getattr(api_client, method)(path.format(req=getattr(b, requirement).id), body, format="json",
                                           **bearer(connect_token(a.app, ALICE)))

    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "not_found"
    _b_untouched(b)


def test_a_token_of_app_a_lists_only_app_a_and_not_alices_links_in_b(api_client, tenants):
    a, b = tenants
    response = api_client.get("/v1/connect/requirements", **bearer(connect_token(a.app, ALICE)))

    assert response.status_code == 200
    listed = {item["id"]: item["status"] for item in response.json()["data"]}
    assert listed == {str(a.billing.id): "pending", str(a.crm.id): "pending"}  # alice is linked in B only


APP_HOST_CALLS = [("post", "/"), ("get", "/v1/runs"), ("post", "/v1/runs"), ("post", "/v1/files"),
                  ("get", "/v1/requirements/status?user_id=alice"), ("post", "/v1/connect/tokens")]


@pytest.mark.parametrize("method,path", APP_HOST_CALLS)
@pytest.mark.parametrize("host_of", ["a", "b"])
def test_a_connect_token_is_refused_on_every_app_host(api_client, tenants, method, path, host_of):
    a, b = tenants
    target = a if host_of == "a" else b
    token = connect_token(a.app, ALICE)

    on_host = getattr(api_client, method)(path, {"input": {"question": "q"}, "user_id": ALICE} if method == "post" else None,
                                          format="json", HTTP_HOST=target.app.hostname, **bearer(token))
    on_path = getattr(api_client, method)(f"/apps/{target.app.id}{path}", {"input": {"question": "q"}} if method == "post"
                                          else None, format="json", **bearer(token))

    assert (on_host.status_code, on_path.status_code) == (401, 401), (on_host.content, on_path.content)
    assert not Run.objects.exists() and not File.objects.exists()


@pytest.mark.parametrize("host", ["a_host", "b_host"])
def test_the_connect_api_is_not_served_on_app_hosts(api_client, tenants, host):
    a, b = tenants
    hostname = a.app.hostname if host == "a_host" else b.app.hostname
    response = api_client.get("/v1/connect/requirements", HTTP_HOST=hostname, **bearer(connect_token(a.app, ALICE)))

    assert response.status_code == 404


@pytest.mark.parametrize("key_of", ["teammate", "outsider"])
@pytest.mark.parametrize("where", ["host", "path"])
def test_another_projects_key_cannot_mint_for_app_a(api_client, tenants, teammate_key, outsider_key, key_of, where):
    a, _ = tenants
    key = teammate_key if key_of == "teammate" else outsider_key
    kwargs = {"HTTP_HOST": a.app.hostname} if where == "host" else {}
    path = "/v1/connect/tokens" if where == "host" else f"/apps/{a.app.id}/v1/connect/tokens"

    response = api_client.post(path, {"user_id": ALICE}, format="json", HTTP_AUTHORIZATION=f"Bearer {key}", **kwargs)

    assert response.status_code == 403, response.content
    assert "token" not in response.json()


# -------------------------------------------------------------------------------------------------- files


def _files_app(project, name):
    workflow = factories.make_workflow(project, f"wf-{name}")
    version = factories.make_version(workflow, factories.definition(output={
        "first": "{{ input.files[0].content if input.files else '' }}"}))
    return factories.make_app(project, name=name, version=version)


@pytest.fixture
def file_of_a(api_client, project, owner_key):
    app_a = _files_app(project, "Files A")
    response = api_client.post(f"/apps/{app_a.id}/v1/files",
                               {"file": SimpleUploadedFile("secret.txt", b"A's private file", "text/plain")},
                               format="multipart", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 201
    return app_a, response.json()["id"]


# `file_ids` is a field of the runs API only (invoke takes multipart files, refused below for other projects).
RUN_ENTRY_POINTS = [("/v1/runs", {}), ("/v1/runs", {"background": True}), ("/v1/runs", {"user_id": ALICE})]


@pytest.mark.parametrize("path,extra", RUN_ENTRY_POINTS)
@pytest.mark.parametrize("b_project", ["same", "teammate"])
def test_app_b_cannot_use_a_file_of_app_a(api_client, project, teammate_project, owner_key, teammate_key, file_of_a,
                                          path, extra, b_project):
    _, file_id = file_of_a
    b_owner, b_key = (project, owner_key) if b_project == "same" else (teammate_project, teammate_key)
    app_b = _files_app(b_owner, "Files B")

    response = api_client.post(f"/apps/{app_b.id}{path}", {"input": {"question": "q"}, "file_ids": [file_id], **extra},
                               format="json", HTTP_AUTHORIZATION=f"Bearer {b_key}")

    assert response.status_code == 404, response.content
    assert response.json()["error"]["details"] == {"file_ids": [f"unknown file: {file_id}"]}
    assert b"A's private file" not in response.content
    assert not Run.objects.filter(app=app_b).exists()


@pytest.mark.parametrize("key_of", ["teammate", "outsider"])
@pytest.mark.parametrize("path", ["/v1/files", "/", "/v1/runs"])
def test_another_projects_key_cannot_upload_to_app_a(api_client, teammate_key, outsider_key, file_of_a, key_of, path):
    app_a, _ = file_of_a
    key = teammate_key if key_of == "teammate" else outsider_key
    upload = SimpleUploadedFile("planted.txt", b"planted", "text/plain")
    body = {"file": upload} if path == "/v1/files" else {"input": json.dumps({"question": "q"}), "files": [upload]}

    response = api_client.post(f"/apps/{app_a.id}{path}", body, format="multipart", HTTP_AUTHORIZATION=f"Bearer {key}")

    assert response.status_code == 403, response.content
    assert list(File.objects.values_list("name", flat=True)) == ["secret.txt"]


# ---------------------------------------------------------------------------------------------------- MCP


def _mcp_enable(*apps):
    for app in apps:
        app.mcp_enabled = True
        app.save(update_fields=["mcp_enabled"])


def _mcp_initialize(api_client, app, token, *, where: str):
    from tests.mcp.support import initialize

    return initialize(api_client, app, token=token, host=where == "host")


@pytest.mark.parametrize("where", ["host", "path"])
def test_an_mcp_token_of_app_a_is_refused_by_app_b(api_client, tenants, where):
    from tests.mcp.support import mcp_token

    a, b = tenants
    _mcp_enable(a.app, b.app)

    response = _mcp_initialize(api_client, b.app, mcp_token(a.app, ALICE), where=where)

    assert response.status_code == 401, response.content
    assert not Run.objects.exists()
    _b_untouched(b)


# ------------------------------------------------------------------------------------ connect flows (verification)


@pytest.fixture
def flow_of_a(api_client, tenants):
    """A link of alice in App A waiting for A's confirmation (A has a connect_verifier_url)."""
    a, _ = tenants
    a.app.connect_verifier_url = "https://client.example.com/verify"
    a.app.save(update_fields=["connect_verifier_url"])
    answer = api_client.post(f"/v1/connect/requirements/{a.billing.id}/credentials",
                             {"type": "http_api_key", "config": {"url": "https://billing.example.com", "api_key": "a-key-123"}},
                             format="json", **bearer(connect_token(a.app, ALICE)))
    assert answer.status_code == 202, answer.content
    return answer.json()["flow_id"]


def _a_still_pending(a) -> None:
    assert Connection.objects.get(app=a.app).status == Connection.Status.PENDING_VERIFICATION


@pytest.mark.parametrize("key_of", ["teammate", "outsider"])
@pytest.mark.parametrize("where", ["host", "path"])
def test_another_projects_key_cannot_use_app_as_mcp_or_mint_its_sessions(api_client, tenants, teammate_key, outsider_key,
                                                                        key_of, where):
    a, _ = tenants
    _mcp_enable(a.app)
    key = teammate_key if key_of == "teammate" else outsider_key
    kwargs = {"HTTP_HOST": a.app.hostname} if where == "host" else {}
    path = "/v1/mcp/sessions" if where == "host" else f"/apps/{a.app.id}/v1/mcp/sessions"

    minted = api_client.post(path, {"user_id": ALICE}, format="json", HTTP_AUTHORIZATION=f"Bearer {key}", **kwargs)
    used = _mcp_initialize(api_client, a.app, key, where=where)

    assert (minted.status_code, used.status_code) == (403, 403), (minted.content, used.content)
    assert "token" not in minted.json()


def test_an_mcp_session_of_app_a_cannot_call_app_bs_tool(api_client, tenants):
    from tests.mcp.support import call, mcp_token, session_of

    a, b = tenants
    _mcp_enable(a.app, b.app)
    token = mcp_token(a.app, ALICE)
    session = session_of(api_client, a.app, token=token)

    on_b = call(api_client, b.app, {"question": "q"}, token=token, session=session, name="support-bot")
    on_a = call(api_client, a.app, {"question": "q"}, token=token, session=session, name="support-bot")

    assert on_b.status_code == 401  # A's token means nothing on B
    assert on_a.json()["error"]["code"] == -32602  # and B's tool is not A's
    assert not Run.objects.exists()
    _b_untouched(b)


@pytest.mark.parametrize("key_of", ["teammate", "outsider"])
@pytest.mark.parametrize("where", ["host", "path"])
def test_another_projects_key_cannot_confirm_a_flow_of_app_a(api_client, tenants, flow_of_a, teammate_key, outsider_key,
                                                             key_of, where):
    a, b = tenants
    key = teammate_key if key_of == "teammate" else outsider_key
    kwargs = {"HTTP_HOST": a.app.hostname} if where == "host" else {}
    path = f"/v1/connect/flows/{flow_of_a}/confirm"
    path = path if where == "host" else f"/apps/{a.app.id}{path}"

    response = api_client.post(path, {"user_id": ALICE}, format="json", HTTP_AUTHORIZATION=f"Bearer {key}", **kwargs)

    assert response.status_code == 403, response.content
    _a_still_pending(a)
    _b_untouched(b)


@pytest.mark.parametrize("user_id", [ALICE, "mallory"])
def test_app_b_cannot_confirm_or_discard_a_flow_of_app_a_through_its_own_host(api_client, tenants, flow_of_a,
                                                                               teammate_key, user_id):
    a, b = tenants

    response = api_client.post(f"/v1/connect/flows/{flow_of_a}/confirm", {"user_id": user_id}, format="json",
                               HTTP_HOST=b.app.hostname, HTTP_AUTHORIZATION=f"Bearer {teammate_key}")

    assert response.status_code == 404, response.content
    _a_still_pending(a)
    _b_untouched(b)


def test_a_connect_token_cannot_confirm_a_flow(api_client, tenants, flow_of_a):
    a, _ = tenants

    response = api_client.post(f"/apps/{a.app.id}/v1/connect/flows/{flow_of_a}/confirm", {"user_id": ALICE},
                               format="json", **bearer(connect_token(a.app, ALICE)))

    assert response.status_code == 401
    _a_still_pending(a)


# -------------------------------------------------------------------------------------------------- proxy

PROXY_TENANT_KEY = "canary-proxy-b-key-77c1d2e3f4"


@pytest.fixture
def proxy_tenants(project, teammate_project):
    """App A and App B (another project of the same organization), each with a shared connection its deployed
    version references and the `billing` requirement linked for alice, all on one loopback upstream."""
    from tests.support.http_stub import HttpStub

    with HttpStub() as stub:
        a = build_connect_setup(project, billing_url=f"{stub.url}/a")
        b = build_connect_setup(teammate_project, app_name="Support bot", workflow_name="support", billing_url=f"{stub.url}/b")
        factories.link_end_user(a.app, a.billing, ALICE, {"url": f"{stub.url}/a", "api_key": "canary-proxy-a-key-5b6c7d8e9f"})
        factories.link_end_user(b.app, b.billing, ALICE, {"url": f"{stub.url}/b", "api_key": PROXY_TENANT_KEY})
        shared_b = factories.make_connection(teammate_project, name="b-shared",
                                             config={"url": f"{stub.url}/b", "api_key": PROXY_TENANT_KEY})
        workflow = factories.make_workflow(teammate_project, "b-shared-flow")
        version = factories.make_version(workflow, factories.definition(
            factories.http_node("call", ref={"id": str(shared_b.id)}, url=f"{stub.url}/b/x")))
        b_shared_app = factories.make_app(teammate_project, name="B shared", version=version)
        # A connection of A's own project that no node of A's deployed version uses.
        unused_a = factories.make_connection(project, name="a-unused", config={"url": f"{stub.url}/a", "api_key": "canary-unused-a-1f2e3d4c5b"})
        yield a, b, b_shared_app, shared_b, unused_a, stub


@pytest.mark.parametrize("where", ["host", "path"])
def test_a_connection_of_another_apps_version_is_refused_through_the_proxy(api_client, proxy_tenants, owner_key, where):
    a, _, _, shared_b, unused_a, stub = proxy_tenants
    for connection in (shared_b, unused_a):
        rest = f"/v1/proxy/connections/{connection.id}/x"
        if where == "host":
            response = api_client.get(rest, HTTP_HOST=a.app.hostname, HTTP_AUTHORIZATION=f"Bearer {owner_key}")
        else:
            response = api_client.get(f"/apps/{a.app.id}{rest}", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
        assert response.status_code == 404, response.content
    assert stub.requests == []


def test_a_requirement_of_another_app_is_not_reachable_by_name(api_client, proxy_tenants, owner_key):
    from apps.workflows.services import requirement_create

    a, b, _, _, _, stub = proxy_tenants
    requirement_create(workflow=b.billing.workflow, name="b-only", title="B only", spec={"connection_type": "http_api_key"})

    response = api_client.get(f"/apps/{a.app.id}/v1/proxy/b-only/x?user_id={ALICE}", HTTP_AUTHORIZATION=f"Bearer {owner_key}")

    assert response.status_code == 404 and stub.requests == []


@pytest.mark.parametrize("key_of", ["teammate", "outsider"])
def test_another_projects_key_cannot_proxy_as_app_as_user(api_client, proxy_tenants, teammate_key, outsider_key, key_of):
    a, _, _, _, _, stub = proxy_tenants
    key = teammate_key if key_of == "teammate" else outsider_key

    on_path = api_client.get(f"/apps/{a.app.id}/v1/proxy/billing/x?user_id={ALICE}", HTTP_AUTHORIZATION=f"Bearer {key}")
    on_host = api_client.get(f"/v1/proxy/billing/x?user_id={ALICE}", HTTP_HOST=a.app.hostname, HTTP_AUTHORIZATION=f"Bearer {key}")

    assert (on_path.status_code, on_host.status_code) == (403, 403)
    assert stub.requests == []


def test_the_same_user_id_reaches_each_apps_own_link(api_client, proxy_tenants, owner_key, teammate_key):
    a, b, _, _, _, stub = proxy_tenants

    in_a = api_client.get(f"/apps/{a.app.id}/v1/proxy/billing/x?user_id={ALICE}", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    b"".join(in_a.streaming_content)
    in_b = api_client.get(f"/apps/{b.app.id}/v1/proxy/billing/x?user_id={ALICE}", HTTP_AUTHORIZATION=f"Bearer {teammate_key}")
    b"".join(in_b.streaming_content)

    assert [r.path for r in stub.requests] == ["/a/x", "/b/x"]
    assert stub.requests[0].headers["Authorization"] == "Bearer canary-proxy-a-key-5b6c7d8e9f"
    assert stub.requests[1].headers["Authorization"] == f"Bearer {PROXY_TENANT_KEY}"


def test_a_connect_token_is_refused_by_the_proxy(api_client, proxy_tenants):
    a, _, _, _, _, stub = proxy_tenants

    response = api_client.get(f"/apps/{a.app.id}/v1/proxy/billing/x?user_id={ALICE}", **bearer(connect_token(a.app, ALICE)))

    assert response.status_code == 401 and stub.requests == []
