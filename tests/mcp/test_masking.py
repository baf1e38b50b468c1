"""Secrets never leave in an MCP answer: an upstream that echoes the credential it received has it masked in
the tool result (text and structured content), in the run and in its events; the session-wide canary scan
(tests/support/canary.py) checks every answer of the MCP tests besides."""

from __future__ import annotations

import pytest

from apps.runs.models import RunEvent
from tests import factories
from tests.conftest import assert_no_canary
from tests.mcp.support import call, mcp_token, session_of
from tests.support.http_stub import HttpStub, echo

pytestmark = pytest.mark.django_db


def test_an_echoed_credential_is_masked_in_the_tool_result(api_client, project):
    with HttpStub(echo) as upstream:
        workflow = factories.make_workflow(project, "echoes")
        requirement = factories.make_requirement(workflow)
        version = factories.make_version(workflow, factories.definition(
            factories.http_node("call", ref={"requirement": str(requirement.id)}, url=f"{upstream.url}/me"),
            output={"seen": "{{ nodes.call.output.body.headers }}"},
        ))
        app = factories.make_app(project, name="Echoes", version=version, mcp_enabled=True)
        factories.link_end_user(app, requirement, "user-42", {"url": upstream.url, "api_key": factories.CANARIES["user42_api_key"]})
        token = mcp_token(app, "user-42")
        session = session_of(api_client, app, token=token)

        response = call(api_client, app, {"question": "q"}, token=token, session=session, name="echoes")

    result = response.json()["result"]
    assert result["isError"] is False
    assert result["structuredContent"]["seen"]["Authorization"] == "********"
    assert upstream.requests[0].headers["Authorization"] == f"Bearer {factories.CANARIES['user42_api_key']}"
    assert_no_canary(response.content)
    assert_no_canary(str(list(RunEvent.objects.values_list("data", flat=True))))
