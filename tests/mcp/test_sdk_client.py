"""The official `mcp` SDK client (mcp.Client over streamable_http_client) against the App's MCP endpoint on a
live server: handshake, tools/list, tools/call as two users reaching two accounts."""

from __future__ import annotations

import pytest

from tests.mcp.conftest import mint, with_client

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_negotiates_and_lists_the_app_as_one_tool(world):
    token = mint(world, "user-42")["token"]

    async def body(client):
        tools = await client.list_tools()
        return client.protocol_version, client.server_info, tools

    version, info, tools = with_client(world.url(), token, body)
    assert version == "2025-11-25"
    assert info.name == "runtime-connection-platform"
    [tool] = tools.tools
    assert tool.name == "account-lookup"
    assert tool.description == "Look up the caller's account."
    assert tool.input_schema == {
        "type": "object", "additionalProperties": False, "required": ["question"],
        "properties": {"question": {"type": "string", "description": "What to ask"},
                       "limit": {"type": "integer", "default": 10}},
    }
    assert tool.output_schema == {"type": "object", "properties": {"account": {}, "question": {}},
                                  "required": ["account", "question"]}


def test_two_users_reach_their_own_accounts(world):
    results = {}
    for user in ("user-42", "user-43"):
        token = mint(world, user)["token"]

        async def body(client):
            return await client.call_tool("account-lookup", {"question": "who am i"})

        results[user] = with_client(world.url(), token, body)
    assert results["user-42"].is_error is False
    assert results["user-42"].structured_content == {"account": "acct-42", "question": "who am i"}
    assert results["user-43"].structured_content == {"account": "acct-43", "question": "who am i"}
