"""The MCP endpoint under gunicorn as configured for production (./gunicorn.conf.py: gthread workers), two
masters of one worker each: the SDK client (with progress, so an SSE answer) against one, and a session
initialized on one continued on the other (sessions are signed, not held in a process's memory)."""

from __future__ import annotations

import httpx
import pytest

from tests.mcp.conftest import build_world, mint, with_client
from tests.mcp.support import ACCEPT
from tests.runs.conftest import _sqlite_template, actors, shared_db  # noqa: F401 (fixtures)
from tests.runs.processes import Gunicorn, production_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def servers(settings, shared_db, tmp_path):  # noqa: F811 (fixture imported above)
    env = production_env(settings, shared_db)  # before anything is stored: fresh keys, shared with the workers
    servers = [Gunicorn(env, tmp_path / f"gunicorn-{name}.log", name=f"worker {name}") for name in "AB"]
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready(host=settings.PLATFORM_HOST)
        yield servers
    finally:
        Gunicorn.stop_all(servers)


def test_the_sdk_client_and_a_session_across_processes_under_gunicorn(servers, actors, upstream):  # noqa: F811
    a, b = (f"http://127.0.0.1:{server.port}" for server in servers)
    world = build_world(actors, upstream, a)
    token = mint(world, "user-42")["token"]
    progress = []

    async def on_progress(value, total, message):
        progress.append((value, total))

    async def body(client):
        tools = await client.list_tools()
        result = await client.call_tool("account-lookup", {"question": "q"}, progress_callback=on_progress)
        return client.protocol_version, tools, result

    version, tools, result = with_client(world.url(), token, body)

    assert version == "2025-11-25"
    assert [t.name for t in tools.tools] == ["account-lookup"]
    assert result.structured_content == {"account": "acct-42", "question": "q"}
    assert progress == [(1, 3), (2, 3), (3, 3)]

    # A session begun on A, continued on B, as user-43.
    user43 = {"Authorization": f"Bearer {mint(world, 'user-43')['token']}", "Accept": ACCEPT}
    path = f"/apps/{world.app.id}/mcp"
    init = httpx.post(a + path, headers=user43, trust_env=False, timeout=30, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    assert init.status_code == 200, init.text
    session = {**user43, "Mcp-Session-Id": init.headers["Mcp-Session-Id"], "MCP-Protocol-Version": "2025-11-25"}
    called = httpx.post(b + path, headers=session, trust_env=False, timeout=30, json={
        "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "account-lookup", "arguments": {"question": "q"}}})

    assert called.status_code == 200, called.text
    assert called.json()["result"]["structuredContent"] == {"account": "acct-43", "question": "q"}
