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


def test_progress_notifications_follow_the_run(world):
    token = mint(world, "user-42")["token"]
    seen = []

    async def progress(value, total, message):
        seen.append((value, total, message))

    async def body(client):
        return await client.call_tool("account-lookup", {"question": "slowly"}, progress_callback=progress)

    result = with_client(world.url(), token, body)

    assert result.structured_content == {"account": "acct-42", "question": "slowly"}
    assert [(v, t) for v, t, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    assert [m for _, _, m in seen] == ["node input completed", "node lookup completed", "node output completed"]


def test_an_access_key_is_accepted_as_no_end_user(world):
    async def body(client):
        return await client.call_tool("account-lookup", {"question": "q"})

    result = with_client(world.url(), world.key, body)

    assert result.is_error is True
    assert result.structured_content["code"] == "requirements_unsatisfied"
    assert result.structured_content["connect_url"] is None


def test_a_public_app_answers_without_a_token(world):
    async def body(client):
        tools = await client.list_tools()
        return tools, await client.call_tool("echo", {"text": "hello"})

    tools, result = with_client(world.url(world.public_app), None, body)

    assert [t.name for t in tools.tools] == ["echo"]
    assert result.is_error is False and result.structured_content == {"said": "hello"}


@pytest.mark.parametrize("case", ["expired", "other_app", "private_without_token"])
def test_the_client_is_refused(world, case):
    if case == "expired":
        from apps.mcp import tokens

        token, _ = tokens.mint(app_id=str(world.app.id), user_id="user-42", ttl=-5)  # expired when minted
    elif case == "other_app":
        token = mint(world, "user-42", app=world.other_app)["token"]
    else:
        token = None
    seen = []

    async def body(client):
        return await client.list_tools()

    with pytest.raises(Exception):  # noqa: B017 (the SDK reports an HTTP 401 as a generic error; `seen` has it)
        with_client(world.url(), token, body, seen=seen)
    assert ("POST", 401, 'Bearer realm="mcp"') in seen
    assert all(status == 401 for method, status, _ in seen if method == "POST")


def test_mcp_disabled_is_404(world):
    import httpx

    world.app.mcp_enabled = False
    world.app.save(update_fields=["mcp_enabled"])
    token = mint(world, "user-42")["token"]

    response = httpx.post(world.url(), trust_env=False, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                          headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 404
