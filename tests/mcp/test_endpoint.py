"""The MCP endpoint through Django's test client: routing, opt-in, who may call, the transport's rules."""

from __future__ import annotations

import json
import time

import pytest

from apps.connect import tokens as connect_tokens
from apps.credentials.models import CredentialAccess
from apps.mcp import tokens
from apps.runs.models import Run
from tests import factories
from tests.mcp.conftest import accounts_api, mcp_definition
from tests.mcp.support import call, initialize, mcp_token, post, session_of, sse_messages
from tests.support.http_stub import HttpStub, StubResponse

pytestmark = pytest.mark.django_db
TOOL = "account-lookup"


@pytest.fixture
def upstream():
    with HttpStub(accounts_api) as stub:
        yield stub


@pytest.fixture
def app(project, upstream):
    workflow = factories.make_workflow(project, "accounts")
    requirement = factories.make_requirement(workflow, name="billing", title="Your billing account")
    version = factories.make_version(workflow, mcp_definition(requirement, upstream.url))
    app = factories.make_app(project, name="Account lookup", version=version, mcp_enabled=True)
    factories.link_end_user(app, requirement, "user-42", {"url": upstream.url, "api_key": factories.CANARIES["user42_api_key"]})
    return app


@pytest.fixture
def other_app(project, app):
    return factories.make_app(project, name="Other", version=app.current_deployment.workflow_version, mcp_enabled=True)


def test_it_answers_initialize_with_a_session_on_the_app_host(api_client, app):
    response = initialize(api_client, app, token=mcp_token(app, "user-42"), host=True)

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert response["Mcp-Session-Id"]
    result = response.json()["result"]
    assert result["protocolVersion"] == "2025-11-25"
    assert result["capabilities"] == {"tools": {"listChanged": False}}


@pytest.mark.parametrize("asked,answered", [("2024-11-05", "2024-11-05"), ("2025-03-26", "2025-03-26"),
                                            ("2025-06-18", "2025-06-18"), ("2099-01-01", "2025-11-25")])
def test_it_negotiates_the_revision(api_client, app, asked, answered):
    response = initialize(api_client, app, token=mcp_token(app, "user-42"), version=asked)

    assert response.json()["result"]["protocolVersion"] == answered


def test_it_is_404_unless_the_app_enabled_mcp(api_client, app):
    app.mcp_enabled = False
    app.save(update_fields=["mcp_enabled"])

    response = initialize(api_client, app, token=mcp_token(app, "user-42"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_it_needs_a_credential_on_a_private_app(api_client, app):
    response = initialize(api_client, app)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="mcp"'


def test_it_refuses_an_expired_token(api_client, app, settings):
    token, _ = tokens.mint(app_id=str(app.id), user_id="user-42", ttl=1)
    time.sleep(2.1)  # the token's own expiry (whole seconds), not a timing assertion

    response = initialize(api_client, app, token=token)

    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]
    assert response["WWW-Authenticate"] == 'Bearer realm="mcp"'


def test_it_refuses_a_token_of_another_app(api_client, app, other_app):
    response = initialize(api_client, app, token=mcp_token(other_app, "user-42"))

    assert response.status_code == 401


@pytest.mark.parametrize("token", ["mcp_garbage", "mcp_" + "a" * 5000, "not-a-token"])
def test_it_refuses_a_bad_token(api_client, app, token):
    assert initialize(api_client, app, token=token).status_code == 401


def test_it_refuses_a_connect_token(api_client, app):
    token, _ = connect_tokens.mint(app_id=str(app.id), user_id="user-42")

    assert initialize(api_client, app, token=token).status_code == 401


def test_it_accepts_an_access_key_of_the_project(api_client, app, owner_key):
    assert initialize(api_client, app, token=owner_key).status_code == 200


def test_it_refuses_an_access_key_of_another_project(api_client, app, outsider_key):
    assert initialize(api_client, app, token=outsider_key).status_code == 403


@pytest.mark.parametrize("path,method", [("/v1/runs", "post"), ("/v1/runs", "get"), ("/", "post"),
                                         ("/v1/connect/tokens", "post"), ("/v1/mcp/sessions", "post"),
                                         ("/v1/requirements/status?user_id=user-42", "get")])
def test_the_token_opens_nothing_else_on_the_app_host(api_client, app, path, method):
    response = getattr(api_client, method)(f"/apps/{app.id}{path}", {"input": {"question": "q"}, "user_id": "user-42"}
                                           if method == "post" else None, format="json",
                                           HTTP_AUTHORIZATION=f"Bearer {mcp_token(app, 'user-42')}")

    assert response.status_code == 401, response.content
    assert not Run.objects.exists()


def test_the_token_is_not_a_connect_token(api_client, app):
    response = api_client.get("/v1/connect/requirements", HTTP_AUTHORIZATION=f"Bearer {mcp_token(app, 'user-42')}")

    assert response.status_code == 401


def test_a_call_runs_the_app_as_the_tokens_user(api_client, app):
    token = mcp_token(app, "user-42")
    session = session_of(api_client, app, token=token)

    response = call(api_client, app, {"question": "hi"}, token=token, session=session, name=TOOL, accept="application/json")

    assert response.status_code == 200, response.content
    result = response.json()["result"]
    assert result["isError"] is False
    assert result["structuredContent"] == {"account": "acct-42", "question": "hi"}
    assert json.loads(result["content"][0]["text"]) == {"account": "acct-42", "question": "hi"}
    run = Run.objects.get()
    assert (run.user_id, run.status, str(run.id)) == ("user-42", "completed", result["_meta"]["run_id"])
    audit = CredentialAccess.objects.get(run_id=run.id)
    assert (audit.user_id, audit.app_id) == ("user-42", app.id)


def test_an_access_key_calls_as_no_end_user(api_client, app, owner_key):
    session = session_of(api_client, app, token=owner_key)

    result = call(api_client, app, {"question": "hi"}, token=owner_key, session=session, name=TOOL).json()["result"]

    assert result["isError"] is True
    assert result["structuredContent"]["code"] == "requirements_unsatisfied"
    assert result["structuredContent"]["connect_url"] is None  # no end user to send a link to
    assert Run.objects.get().user_id == ""


def test_an_unsatisfied_user_gets_a_fresh_connect_link(api_client, app, settings):
    token = mcp_token(app, "user-44")
    session = session_of(api_client, app, token=token)

    first = call(api_client, app, {"question": "hi"}, token=token, session=session, name=TOOL).json()["result"]
    second = call(api_client, app, {"question": "hi"}, token=token, session=session, name=TOOL).json()["result"]

    assert first["isError"] is True
    content = first["structuredContent"]
    assert content["code"] == "requirements_unsatisfied"
    assert [u["name"] for u in content["unsatisfied"]] == ["billing"]
    assert content["connect_url"].startswith(settings.PLATFORM_URL + "/connect?token=")
    claims = connect_tokens.decode(content["connect_url"].split("token=", 1)[1])
    assert (claims.app_id, claims.user_id) == (str(app.id), "user-44")
    assert second["structuredContent"]["connect_url"] != content["connect_url"]  # single-use links: a new one


def test_it_offers_url_elicitation_to_a_client_that_takes_it(api_client, app):
    token = mcp_token(app, "user-44")
    session = session_of(api_client, app, token=token, capabilities={"elicitation": {"url": {}}})

    response = call(api_client, app, {"question": "hi"}, token=token, session=session, name=TOOL)

    assert response["Content-Type"] == "text/event-stream"
    elicit, answer = sse_messages(response)
    assert elicit["method"] == "elicitation/create"
    assert elicit["params"]["mode"] == "url"
    assert elicit["params"]["url"] == answer["result"]["structuredContent"]["connect_url"]
    assert answer["id"] == 7 and answer["result"]["isError"] is True


def test_no_elicitation_before_the_revision_that_has_it(api_client, app):
    token = mcp_token(app, "user-44")
    session = session_of(api_client, app, token=token, version="2025-06-18", capabilities={"elicitation": {}})

    response = call(api_client, app, {"question": "hi"}, token=token, session=session, name=TOOL)

    assert response["Content-Type"] == "application/json"
    assert response.json()["result"]["isError"] is True


def test_arguments_that_do_not_fit_are_a_tool_error(api_client, app):
    token = mcp_token(app, "user-42")
    session = session_of(api_client, app, token=token)

    result = call(api_client, app, {"limit": "ten"}, token=token, session=session, name=TOOL).json()["result"]

    assert result["isError"] is True
    assert result["structuredContent"] == {"code": "invalid_input", "details": {
        "question": ["this field is required"], "limit": ["must be of type integer"]}}


def test_a_failed_node_is_a_tool_error(api_client, app, upstream):
    upstream.handler = lambda request: StubResponse(500, {})
    token = mcp_token(app, "user-42")
    session = session_of(api_client, app, token=token)

    result = call(api_client, app, {"question": "hi"}, token=token, session=session, name=TOOL).json()["result"]

    assert result["isError"] is True
    assert result["structuredContent"]["code"] == "node_failed"
    assert Run.objects.get().status == "failed"


def test_an_unknown_tool_is_invalid_params(api_client, app):
    token = mcp_token(app, "user-42")
    session = session_of(api_client, app, token=token)

    response = call(api_client, app, {}, token=token, session=session, name="nope")

    assert response.json()["error"]["code"] == -32602
    assert not Run.objects.exists()


def test_requests_need_the_session(api_client, app):
    token = mcp_token(app, "user-42")
    missing = post(api_client, app, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, token=token)
    forged = post(api_client, app, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, token=token, session="forged")

    assert missing.status_code == 400
    assert forged.status_code == 404


def test_a_session_of_another_app_is_unknown(api_client, app, other_app):
    session = session_of(api_client, other_app, token=mcp_token(other_app, "user-42"))

    response = post(api_client, app, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, token=mcp_token(app, "user-42"),
                    session=session)

    assert response.status_code == 404


def test_an_unsupported_revision_header_names_ours(api_client, app):
    response = post(api_client, app, {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}},
                    token=mcp_token(app, "user-42"), **{"MCP-Protocol-Version": "2026-07-28"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32022
    assert error["data"]["supported"] == ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]


def test_notifications_and_responses_are_accepted(api_client, app):
    token = mcp_token(app, "user-42")
    session = session_of(api_client, app, token=token)

    notified = post(api_client, app, {"jsonrpc": "2.0", "method": "notifications/initialized"}, token=token, session=session)
    answered = post(api_client, app, {"jsonrpc": "2.0", "id": "e1", "result": {"action": "accept"}}, token=token, session=session)

    assert (notified.status_code, answered.status_code) == (202, 202)


@pytest.mark.parametrize("body,code", [(b"{nope", -32700), (b"[]", -32600), (b'{"jsonrpc": "1.0", "id": 1}', -32600)])
def test_malformed_messages_are_json_rpc_errors(api_client, app, body, code):
    response = api_client.post(f"/apps/{app.id}/mcp", data=body, content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {mcp_token(app, 'user-42')}")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_get_and_delete_are_not_allowed(api_client, app):
    token = f"Bearer {mcp_token(app, 'user-42')}"
    assert api_client.get(f"/apps/{app.id}/mcp", HTTP_AUTHORIZATION=token).status_code == 405
    assert api_client.delete(f"/apps/{app.id}/mcp", HTTP_AUTHORIZATION=token).status_code == 405


def test_ping_and_list(api_client, app):
    token = mcp_token(app, "user-42")
    session = session_of(api_client, app, token=token, version="2024-11-05")

    pong = post(api_client, app, {"jsonrpc": "2.0", "id": "p", "method": "ping"}, token=token, session=session)
    listed = post(api_client, app, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, token=token, session=session)

    assert pong.json() == {"jsonrpc": "2.0", "id": "p", "result": {}}
    [tool] = listed.json()["result"]["tools"]
    assert tool["name"] == TOOL


def test_it_is_rate_limited_per_session_token(api_client, app, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "mcp": (2, 60)}
    token = mcp_token(app, "user-42")
    for _ in range(2):
        assert initialize(api_client, app, token=token).status_code == 200

    refused = initialize(api_client, app, token=token)
    other_session = initialize(api_client, app, token=mcp_token(app, "user-42"))

    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert other_session.status_code == 200  # another token counts on its own


def test_a_call_logs_with_the_request_run_and_user(api_client, app, caplog):
    import logging

    from apps.core.log_context import AddLogContext

    caplog.handler.addFilter(AddLogContext())
    token = mcp_token(app, "user-42")
    session = session_of(api_client, app, token=token)

    with caplog.at_level(logging.INFO, logger="apps.mcp"):
        response = call(api_client, app, {"question": "hi"}, token=token, session=session, name=TOOL)

    [record] = [r for r in caplog.records if r.getMessage() == "MCP tools/call ended: completed"]
    assert record.request_id == response["X-Request-ID"]
    assert (record.run_id, record.user_id, record.app_id) == (str(Run.objects.get().id), "user-42", str(app.id))


def test_a_call_is_counted(api_client, app):
    from apps.core import metrics

    token = mcp_token(app, "user-42")
    session = session_of(api_client, app, token=token)
    before = metrics.MCP_TOOL_CALLS.labels("completed")._value.get()

    call(api_client, app, {"question": "hi"}, token=token, session=session, name=TOOL)

    assert metrics.MCP_TOOL_CALLS.labels("completed")._value.get() == before + 1
