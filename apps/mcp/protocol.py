"""MCP's Streamable HTTP transport, to its specification, for a synchronous (WSGI) Django view.

Why not the SDK's server: `mcp`'s server side (StreamableHTTPSessionManager, Server) is an ASGI/anyio
application that keeps each session in the memory of the process that initialized it, with a task group
running for the server's life. Under gunicorn's gthread workers (WSGI, several processes) a session's later
requests land on any worker, and an ASGI app inside a WSGI thread needs an event loop per request. So the
transport is implemented here, stateless across requests, and the SDK's pydantic models (`mcp_types`) check
every request's params and every result we send, per negotiated revision (docs/decisions.md "MCP").

Stateless: the `Mcp-Session-Id` the server hands out at `initialize` is a signed value carrying the App, the
negotiated revision and whether the client can take URL-mode elicitation, so any worker of any process can
serve the session's next request without shared state. Identity is not in it: every request authenticates
with its own bearer (apps.mcp.authentication).

Revisions: the handshake revisions of the pinned SDK (mcp_types.version.HANDSHAKE_PROTOCOL_VERSIONS,
2024-11-05 to 2025-11-25), newest offered. The SDK's 2026-07-28 per-request era is not served: its
`server/discover` probe is answered "unsupported protocol version" (naming ours), on which the SDK's client
falls back to `initialize`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.core import signing
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
)
from mcp_types.methods import parse_client_request, serialize_server_result
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, is_version_at_least
from pydantic import ValidationError

SUPPORTED_VERSIONS: tuple[str, ...] = HANDSHAKE_PROTOCOL_VERSIONS
LATEST_VERSION = LATEST_HANDSHAKE_VERSION
# The revision a session without an MCP-Protocol-Version header is assumed to speak (the transport spec's rule).
DEFAULT_VERSION = "2025-03-26"
SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
_SESSION_SALT = "apps.mcp.session/v1"
URL_ELICITATION_SINCE = "2025-11-25"  # URL-mode elicitation arrived in this revision

__all__ = [
    "INTERNAL_ERROR", "INVALID_PARAMS", "INVALID_REQUEST", "METHOD_NOT_FOUND", "PARSE_ERROR",
    "UNSUPPORTED_PROTOCOL_VERSION", "RpcError", "Session", "negotiate", "parse_params", "result_body",
]


class RpcError(Exception):
    """A JSON-RPC error answer, with the HTTP status the transport sends it with."""

    def __init__(self, code: int, message: str, *, data: Any = None, http_status: int = 200):
        super().__init__(message)
        self.code, self.message, self.data, self.http_status = code, message, data, http_status

    def body(self, request_id: Any) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return {"jsonrpc": "2.0", "id": request_id, "error": error}


def unsupported_version(requested: Any) -> RpcError:
    return RpcError(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
                    data={"supported": list(SUPPORTED_VERSIONS), "requested": str(requested)[:64]}, http_status=400)


@dataclass(frozen=True)
class Session:
    """What an `Mcp-Session-Id` carries (signed, so a client cannot change it)."""

    app_id: str
    version: str
    url_elicitation: bool = False

    def header(self) -> str:
        return signing.dumps({"a": self.app_id, "v": self.version, "e": int(self.url_elicitation)},
                             salt=_SESSION_SALT, compress=True)

    @classmethod
    def from_header(cls, value: str, *, app_id: str) -> Session:
        """The session of this App, or 404 (the transport's answer to a session it does not know: the client
        initializes again)."""
        try:
            data = signing.loads(value, salt=_SESSION_SALT)
        except signing.BadSignature:
            data = None
        if not isinstance(data, dict) or data.get("a") != app_id or data.get("v") not in SUPPORTED_VERSIONS:
            raise RpcError(INVALID_REQUEST, "Unknown session: initialize again.", http_status=404)
        return cls(app_id=app_id, version=data["v"], url_elicitation=bool(data.get("e")))


def negotiate(requested: Any) -> str:
    """The revision to answer `initialize` with: the client's when we speak it, else our newest (the client
    then disconnects if it cannot speak that)."""
    return requested if requested in SUPPORTED_VERSIONS else LATEST_VERSION


def parse_params(method: str, version: str, params: Any):
    """The request's params as the SDK's model for this revision; -32602 when they do not fit."""
    if params is not None and not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "params must be an object")
    try:
        return parse_client_request(method, version, params)
    except KeyError:
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}") from None
    except ValidationError as exc:
        problems = [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()[:10]]
        raise RpcError(INVALID_PARAMS, "Invalid params", data={"errors": problems}) from None


def client_takes_url_elicitation(version: str, capabilities: Any) -> bool:
    if not is_version_at_least(version, URL_ELICITATION_SINCE):
        return False
    elicitation = getattr(capabilities, "elicitation", None)
    return elicitation is not None and getattr(elicitation, "url", None) is not None


def result_body(method: str, version: str, request_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    """A JSON-RPC success answer, its result checked and shaped by the SDK's model for this revision."""
    return {"jsonrpc": "2.0", "id": request_id, "result": serialize_server_result(method, version, result)}


def sse_frame(message: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"
