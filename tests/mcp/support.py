"""Helpers for MCP tests through Django's test client: one JSON-RPC message per POST."""

from __future__ import annotations

import json
from typing import Any

from apps.mcp import tokens

ACCEPT = "application/json, text/event-stream"


def mcp_token(app, user_id: str, ttl: int = 600) -> str:
    token, _ = tokens.mint(app_id=str(app.id), user_id=user_id, ttl=ttl)
    return token


def post(client, app, message: Any, *, token: str | None = None, session: str | None = None, host: bool = False,
         accept: str = ACCEPT, **headers):
    extra = {"HTTP_ACCEPT": accept, **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}}
    if token:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    if session:
        extra["HTTP_MCP_SESSION_ID"] = session
    path = "/mcp" if host else f"/apps/{app.id}/mcp"
    if host:
        extra["HTTP_HOST"] = app.hostname
    return client.post(path, data=json.dumps(message), content_type="application/json", **extra)


def initialize(client, app, *, token: str | None = None, version: str = "2025-11-25", capabilities=None, **kw):
    response = post(client, app, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": capabilities or {},
        "clientInfo": {"name": "test", "version": "1"}}}, token=token, **kw)
    return response


def session_of(client, app, *, token: str | None = None, **kw) -> str:
    response = initialize(client, app, token=token, **kw)
    assert response.status_code == 200, response.content
    return response["Mcp-Session-Id"]


def call(client, app, arguments: dict, *, token: str | None = None, session: str, name: str, request_id=7, **kw):
    return post(client, app, {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                              "params": {"name": name, "arguments": arguments}}, token=token, session=session, **kw)


def sse_messages(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()
    return [json.loads(line[len("data: "):]) for line in body.splitlines() if line.startswith("data: ")]
