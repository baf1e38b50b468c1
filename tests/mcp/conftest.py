"""An App that is an MCP server, on a live server, with two end users linked to two accounts of a loopback
upstream (user-42 → acct-42, user-43 → acct-43) and a third (user-44) linked to nothing; and helpers that
drive the official `mcp` SDK client against it."""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass
from typing import Any

import pytest

from tests import factories
from tests.runs.conftest import _sqlite_template, actors, live_url, shared_db  # noqa: F401 (fixtures)
from tests.support.http_stub import HttpStub, RecordedRequest, StubResponse

ACCOUNTS = {
    f"Bearer {factories.CANARIES['user42_api_key']}": "acct-42",
    f"Bearer {factories.CANARIES['user43_api_key']}": "acct-43",
    f"Bearer {factories.CANARIES['header_secret']}": "acct-44",  # user-44 links it on the hosted page (a tracked canary)
}


def accounts_api(request: RecordedRequest) -> StubResponse:
    """The third-party API: who you are depends on the key you present."""
    account = ACCOUNTS.get(request.headers.get("Authorization", ""))
    if account is None:
        return StubResponse(401, {"error": "unknown key"})
    return StubResponse(200, {"account": account, "path": request.path, "q": request.query.get("q", [""])[0]})


@pytest.fixture
def upstream():
    with HttpStub(accounts_api) as stub:
        yield stub


def mcp_definition(requirement, upstream_url: str) -> dict:
    return factories.definition(
        factories.http_node("lookup", ref={"requirement": str(requirement.id)}, url=f"{upstream_url}/v1/me",
                            params={"q": "{{ input.question }}"}),
        input_fields={"question": {"type": "string", "required": True, "description": "What to ask"},
                      "limit": {"type": "integer", "default": 10}},
        output={"account": "{{ nodes.lookup.output.body.account }}", "question": "{{ input.question }}"},
    )


@dataclass
class McpWorld:
    app: Any
    other_app: Any
    public_app: Any
    requirement: Any
    key: str
    outsider_key: str
    base: str  # the live server, platform host

    def url(self, app=None) -> str:
        return f"{self.base}/apps/{(app or self.app).id}/mcp"


def build_world(actors, upstream, base: str) -> McpWorld:  # noqa: F811 (the fixture's value, passed on)
    project = actors["project"]
    workflow = factories.make_workflow(project, "accounts")
    workflow.description = "Look up the caller's account."
    workflow.save(update_fields=["description"])
    requirement = factories.make_requirement(workflow, name="billing", title="Your billing account")
    version = factories.make_version(workflow, mcp_definition(requirement, upstream.url))
    app = factories.make_app(project, name="Account lookup", version=version, mcp_enabled=True)
    for user, key in (("user-42", "user42_api_key"), ("user-43", "user43_api_key")):
        factories.link_end_user(app, requirement, user, {"url": upstream.url, "api_key": factories.CANARIES[key]})
    other_app = factories.make_app(project, name="Other", version=version, mcp_enabled=True)
    public_workflow = factories.make_workflow(project, "echo")
    public_workflow.description = "Say it back."
    public_workflow.save(update_fields=["description"])
    public_version = factories.make_version(public_workflow, {"nodes": [
        {"id": "input", "type": "input", "fields": {"text": {"type": "string", "required": True}}},
        {"id": "output", "type": "output", "depends_on": ["input"], "fields": {"said": "{{ input.text }}"}},
    ]})
    public_app = factories.make_app(project, name="Echo", version=public_version, access_type="public", mcp_enabled=True)
    return McpWorld(app=app, other_app=other_app, public_app=public_app, requirement=requirement,
                    key=actors["owner_key"], outsider_key=actors["outsider_key"], base=base)


@pytest.fixture
def world(actors, live_url, upstream, settings):  # noqa: F811 (fixtures imported above)
    settings.PLATFORM_URL = live_url
    return build_world(actors, upstream, live_url)


def mint(world: McpWorld, user_id: str, *, app=None, key: str | None = None, **extra) -> dict:
    import httpx

    response = httpx.post(f"{world.base}/apps/{(app or world.app).id}/v1/mcp/sessions", trust_env=False, timeout=30,
                          json={"user_id": user_id, **extra}, headers={"Authorization": f"Bearer {key or world.key}"})
    assert response.status_code == 201, response.text
    return response.json()


async def _with_client(url: str, token: str | None, body, *, seen: list | None = None, **client_kwargs):
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def record(response):
        if seen is not None:
            seen.append((response.request.method, response.status_code, response.headers.get("WWW-Authenticate")))

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120), trust_env=False,
                                  event_hooks={"response": [record]}) as http:
        async with Client(streamable_http_client(url, http_client=http), **client_kwargs) as client:
            return await body(client)


def with_client(url: str, token: str | None, body, **client_kwargs):  # seen=[]: (method, status, WWW-Authenticate)
    """Run `await body(client)` with an SDK client connected (initialize done) to `url`. In a thread of its own,
    so it works beside Playwright's sync API (which keeps an event loop in the test's thread)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _with_client(url, token, body, **client_kwargs)).result()
