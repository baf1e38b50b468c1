"""The MCP endpoint (`/mcp` on the App host, `/apps/<id>/mcp` on the platform host) and session-token minting
(`POST /v1/mcp/sessions`). The transport is apps.mcp.protocol; a tool call is apps.mcp.services.tool_call."""

from __future__ import annotations

import logging
import queue
import secrets
import threading
from typing import Any

from django.db import connection
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from mcp_types import CallToolRequest, InitializeRequest
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import AccessKeyAuthentication, CanUseApp
from apps.connect.apis import StrictCharField, _exact_fields
from apps.core import log_context, metrics
from apps.core.errors import ApplicationError, BadRequest, NotFound
from apps.core.parsers import loads_bounded
from apps.core.schema import error_responses

from . import protocol as rpc
from . import services
from .authentication import WWW_AUTHENTICATE, CanUseMcp, McpAuthentication, end_user_of
from .tools import tool_for

logger = logging.getLogger(__name__)

SERVER_NAME = "runtime-connection-platform"
SERVER_VERSION = "1"
# "app host" puts both operations with the App-host API (its servers, and the App-host schema fuzzing); "mcp"
# groups them in the docs.
TAGS = ["app host", "mcp"]


class McpSessionCreateApi(APIView):
    """`POST /v1/mcp/sessions` on the App host: an MCP session token for one of the App's end users."""

    authentication_classes = [AccessKeyAuthentication]
    permission_classes = [CanUseApp]
    rate_limits = {"POST": "mcp_sessions"}  # per access key (apps.core.ratelimit)

    class McpSessionInputSerializer(serializers.Serializer):
        user_id = StrictCharField(min_length=1, max_length=255, trim_whitespace=False)
        ttl_seconds = serializers.IntegerField(required=False, min_value=60, max_value=3600)

    class McpSessionSerializer(serializers.Serializer):
        token = serializers.CharField(help_text="Send it to the MCP endpoint as `Authorization: Bearer <token>`.")
        url = serializers.CharField(help_text="The App's MCP endpoint (Streamable HTTP).")
        expires_at = serializers.DateTimeField()

    @extend_schema(
        tags=TAGS, operation_id="mcp_sessions_create", summary="Mint an MCP session token for an end user",
        description="A bearer token for the App's MCP endpoint, scoped to this App and this end user (at most one "
                    "hour; `ttl_seconds` asks for less than the default). The agent holding it can call the App's "
                    "tool as that user, and nothing else: not the runs API, not the connect API.",
        request=McpSessionInputSerializer, responses={201: McpSessionSerializer, **error_responses(400, 401, 403)},
        examples=[OpenApiExample("Mint", request_only=True, value={"user_id": "user-42", "ttl_seconds": 900})],
    )
    def post(self, request):
        data = _exact_fields(request.data, {"user_id", "ttl_seconds"})
        serializer = self.McpSessionInputSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        log_context.bind(user_id=serializer.validated_data["user_id"])
        token, expires_at = services.mcp_session_create(app=request.app, **serializer.validated_data)
        url = request.build_absolute_uri(f"{getattr(request, 'app_base_path', '')}/mcp")
        response = Response(self.McpSessionSerializer({"token": token, "url": url, "expires_at": expires_at}).data,
                            status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


_JSONRPC_MESSAGE = inline_serializer("McpJsonRpcMessage", {
    "jsonrpc": serializers.ChoiceField(choices=["2.0"]),
    "id": serializers.IntegerField(required=False, help_text="Absent on notifications."),
    "method": serializers.CharField(help_text="initialize, ping, tools/list, tools/call, notifications/initialized"),
    "params": serializers.DictField(required=False),
})
# A JSON-RPC answer; before the App is known to serve MCP (no App, `mcp_enabled` off) a 404 is the API's error
# envelope `{"error": {...}}`, which this shape also admits.
_JSONRPC_ANSWER = inline_serializer("McpJsonRpcAnswer", {
    "jsonrpc": serializers.ChoiceField(choices=["2.0"], required=False),
    "id": serializers.JSONField(allow_null=True, required=False),
    "result": serializers.DictField(required=False),
    "error": serializers.DictField(required=False),
})


def _accepts(request) -> tuple[bool, bool]:
    """(JSON, SSE) acceptable to the client. No Accept header, or */*, takes both."""
    accept = request.headers.get("Accept", "") or "*/*"
    kinds = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    anything = "*/*" in kinds
    return (anything or "application/json" in kinds or "application/*" in kinds,
            anything or "text/event-stream" in kinds or "text/*" in kinds)


def _rpc_json(body: dict[str, Any], *, http_status: int = 200, session: str | None = None) -> JsonResponse:
    response = JsonResponse(body, status=http_status, json_dumps_params={"separators": (",", ":"), "ensure_ascii": False})
    response["Cache-Control"] = "no-store"
    if session:
        response[rpc.SESSION_HEADER] = session
    return response


def _accepted() -> HttpResponse:
    return HttpResponse(status=202, content_type="text/plain")


def _sse(frames) -> StreamingHttpResponse:
    """WSGI: the gthread worker thread serving it is held until the last frame (one tool call)."""
    response = StreamingHttpResponse(frames, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache, no-store"
    response["X-Accel-Buffering"] = "no"
    return response


class McpApi(APIView):
    """The App as an MCP server (SPEC §14), Streamable HTTP. POST carries one JSON-RPC message; GET (a stream
    the server could start on its own) and DELETE (ending a session: ours are stateless) answer 405."""

    authentication_classes = [McpAuthentication]
    permission_classes = [CanUseMcp]
    rate_limits = {"POST": "mcp"}  # per MCP session token or access key; anonymous per client IP

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # who calls first: a stranger learns nothing of the App
        if not getattr(request.app, "mcp_enabled", False):
            raise NotFound("This App is not an MCP server.")

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if response.status_code == 401:  # the error envelope's default names the access-key realm
            response["WWW-Authenticate"] = WWW_AUTHENTICATE
        return response

    @extend_schema(
        tags=TAGS, operation_id="mcp_post", summary="MCP Streamable HTTP endpoint (JSON-RPC)",
        description="One JSON-RPC 2.0 message per POST: `initialize` (answered with an `Mcp-Session-Id` header to "
                    "send back), `ping`, `tools/list`, `tools/call`; notifications and responses are accepted with "
                    "202. Answers are `application/json`, or `text/event-stream` when a `tools/call` asked for "
                    "progress (`_meta.progressToken`) or the client takes URL elicitation. JSON-RPC errors come "
                    "in the JSON-RPC shape; authentication and rate-limit errors in the API's error envelope. "
                    "Authorization: an MCP session token (POST /v1/mcp/sessions), an access key, or none on a "
                    "public App. Only when the App has `mcp_enabled`.",
        request=_JSONRPC_MESSAGE,
        examples=[
            OpenApiExample("initialize", request_only=True, value={
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                           "clientInfo": {"name": "agent", "version": "1"}}}),
            OpenApiExample("tools/call", request_only=True, value={
                "jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "invoice-bot", "arguments": {"question": "What do I owe?"}}}),
        ],
        responses={(200, "application/json"): _JSONRPC_ANSWER,
                   (200, "text/event-stream"): OpenApiResponse(OpenApiTypes.STR, description=(
                       "JSON-RPC messages as SSE `message` events: `notifications/progress`, an `elicitation/create` "
                       "request (URL mode), then the answer")),
                   (202, "text/plain"): OpenApiResponse(OpenApiTypes.STR,
                                                        description="A notification or response, accepted (no body)"),
                   (400, "application/json"): _JSONRPC_ANSWER, (404, "application/json"): _JSONRPC_ANSWER,
                   (406, "application/json"): _JSONRPC_ANSWER, (415, "application/json"): _JSONRPC_ANSWER,
                   **error_responses(401, 403, 413)},
    )
    def post(self, request):
        wants_json, wants_sse = _accepts(request)
        if not (wants_json or wants_sse):
            return _rpc_json(rpc.RpcError(rpc.INVALID_REQUEST, "Accept application/json or text/event-stream.").body(None),
                             http_status=406)
        if (request.content_type or "").split(";", 1)[0].strip().lower() != "application/json":
            return _rpc_json(rpc.RpcError(rpc.INVALID_REQUEST, "Content-Type must be application/json.").body(None),
                             http_status=415)
        try:
            message = loads_bounded(request.body)
        except BadRequest as exc:
            return _rpc_json(rpc.RpcError(rpc.PARSE_ERROR, exc.message).body(None), http_status=400)
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return _rpc_json(rpc.RpcError(rpc.INVALID_REQUEST, "One JSON-RPC 2.0 message per request (no batches).").body(None),
                             http_status=400)
        if "method" not in message:
            if "id" in message and ("result" in message or "error" in message):
                return _accepted()  # a client's answer (to an elicitation): nothing waits for it here
            return _rpc_json(rpc.RpcError(rpc.INVALID_REQUEST, "Not a JSON-RPC request.").body(None), http_status=400)
        request_id = message.get("id")
        if "id" not in message:
            return _accepted()  # notifications (initialized, cancelled, ...): nothing to act on
        if (not isinstance(request_id, (str, int)) or isinstance(request_id, bool)
                or not isinstance(message.get("method"), str)):
            return _rpc_json(rpc.RpcError(rpc.INVALID_REQUEST, "Invalid JSON-RPC request.").body(None), http_status=400)
        try:
            return self.dispatch_rpc(request, message["method"], request_id, message.get("params"),
                                     wants_json=wants_json, wants_sse=wants_sse)
        except rpc.RpcError as exc:
            return _rpc_json(exc.body(request_id), http_status=exc.http_status)

    def get(self, request):
        return self._not_allowed()

    def delete(self, request):
        return self._not_allowed()

    @staticmethod
    def _not_allowed() -> HttpResponse:
        return HttpResponse(status=405)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code == 405:
            response["Allow"] = "POST"  # DRF lists the view's handlers; GET and DELETE are answered only to refuse
        return response

    # --- JSON-RPC methods

    def dispatch_rpc(self, request, method: str, request_id, params, *, wants_json: bool, wants_sse: bool):
        app = request.app
        header_version = request.headers.get(rpc.VERSION_HEADER)
        if method == "initialize":
            return self.initialize(app, request_id, params)
        if header_version is not None and header_version not in rpc.SUPPORTED_VERSIONS:
            raise rpc.unsupported_version(header_version)  # e.g. the SDK's 2026-07-28 `server/discover` probe
        session_header = request.headers.get(rpc.SESSION_HEADER)
        if not session_header:
            raise rpc.RpcError(rpc.INVALID_REQUEST, f"Missing {rpc.SESSION_HEADER}: initialize first.", http_status=400)
        session = rpc.Session.from_header(session_header, app_id=str(app.id))
        if header_version is not None and header_version != session.version:
            raise rpc.RpcError(rpc.INVALID_REQUEST, f"{rpc.VERSION_HEADER} is not this session's negotiated revision.",
                               http_status=400)
        parsed = rpc.parse_params(method, session.version, params)
        if method == "ping":
            return _rpc_json(rpc.result_body(method, session.version, request_id, {}))
        if method == "tools/list":
            tool = tool_for(app)
            return _rpc_json(rpc.result_body(method, session.version, request_id, {"tools": [tool] if tool else []}))
        if method == "tools/call":
            return self.tools_call(request, session, request_id, parsed, params, wants_json=wants_json, wants_sse=wants_sse)
        raise rpc.RpcError(rpc.METHOD_NOT_FOUND, f"Method not found: {method}")

    def initialize(self, app, request_id, params):
        requested = params.get("protocolVersion") if isinstance(params, dict) else None
        version = rpc.negotiate(requested)
        parsed = rpc.parse_params("initialize", version, params)
        assert isinstance(parsed, InitializeRequest)
        session = rpc.Session(app_id=str(app.id), version=version,
                              url_elicitation=rpc.client_takes_url_elicitation(version, parsed.params.capabilities))
        tool = tool_for(app)
        result = {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": SERVER_NAME, "title": app.display_name or app.name, "version": SERVER_VERSION},
            "instructions": (f"One tool, `{tool['name']}`: {tool['description']}" if tool else "Nothing is deployed yet."),
        }
        return _rpc_json(rpc.result_body("initialize", version, request_id, result), session=session.header())

    def tools_call(self, request, session: rpc.Session, request_id, parsed, params, *, wants_json: bool, wants_sse: bool):
        assert isinstance(parsed, CallToolRequest)
        app = request.app
        tool = tool_for(app)
        if tool is None or parsed.params.name != tool["name"]:
            raise rpc.RpcError(rpc.INVALID_PARAMS, f"Unknown tool: {parsed.params.name}")
        arguments = dict(parsed.params.arguments or {})
        user_id = end_user_of(request)
        # The raw `_meta.progressToken` (the parsed model keeps it as a dict, keyed by its Python name).
        meta = (params or {}).get("_meta") if isinstance(params, dict) else None
        progress_token = meta.get("progressToken") if isinstance(meta, dict) else None
        if isinstance(progress_token, bool) or not isinstance(progress_token, (str, int)):
            progress_token = None
        call = _ToolCall(app=app, user_id=user_id, arguments=arguments, version=session.version, request_id=request_id,
                         elicit=session.url_elicitation and wants_sse)
        if progress_token is not None and wants_sse:
            nodes = (app.current_deployment.workflow_version.definition or {}).get("nodes") or []
            return _sse(call.streamed(progress_token, total=len(nodes)))
        frames = call.run()
        if len(frames) == 1 and wants_json:
            return _rpc_json(frames[0])
        return _sse(rpc.sse_frame(frame) for frame in frames)


# Events that advance a tool call's progress: each node that reaches an end (completed, failed or skipped).
_PROGRESS_EVENTS = {"node.completed": "completed", "node.failed": "failed", "node.skipped": "skipped"}
_END = object()


class _ToolCall:
    """One tools/call: the run, and the JSON-RPC messages that answer it."""

    def __init__(self, *, app, user_id: str, arguments: dict[str, Any], version: str, request_id, elicit: bool):
        self.app, self.user_id, self.arguments = app, user_id, arguments
        self.version, self.request_id, self.elicit = version, request_id, elicit

    def run(self, observe=None) -> list[dict[str, Any]]:
        """Run the App; the answer's messages: [an elicitation request?, the tool result]."""
        try:
            outcome = services.tool_call(app=self.app, user_id=self.user_id, arguments=self.arguments, observe=observe)
        except ApplicationError as exc:  # e.g. the database is unreachable: an error answer, not a traceback
            metrics.mcp_tool_call(outcome="error")
            logger.warning("MCP tools/call refused: %s", exc.code)
            return [rpc.RpcError(rpc.INTERNAL_ERROR, exc.message).body(self.request_id)]
        metrics.mcp_tool_call(outcome=outcome.outcome)
        log_context.bind(run_id=outcome.run_id)
        logger.info("MCP tools/call ended: %s", outcome.outcome)
        frames = []
        if outcome.connect_url and self.elicit:
            # URL-mode elicitation (2025-11-25): the client shows the link and asks the user's consent. The answer
            # the client POSTs back is accepted (202) and changes nothing: the tool result below already carries
            # the link, and the agent calls the tool again once the user has connected.
            frames.append({"jsonrpc": "2.0", "id": f"elicit-{secrets.token_hex(8)}", "method": "elicitation/create",
                           "params": {"mode": "url", "elicitationId": secrets.token_urlsafe(12), "url": outcome.connect_url,
                                      "message": "Connect your accounts to let this tool act for you."}})
        frames.append(rpc.result_body("tools/call", self.version, self.request_id, outcome.result))
        return frames

    def streamed(self, progress_token, *, total: int):
        """SSE frames: a progress notification per node that ends, while the run goes on in a thread of this
        request, then the answer. The run is not tied to the client: one that disconnects leaves it to end."""
        events: queue.Queue = queue.Queue()
        done = 0

        def observe(type_: str, data: dict[str, Any]) -> None:
            if type_ in _PROGRESS_EVENTS:
                events.put((type_, data))

        def work() -> None:
            try:
                events.put(self.run(observe=observe))
            except Exception:  # never leave the stream waiting
                logger.exception("MCP tools/call failed")
                events.put([rpc.RpcError(rpc.INTERNAL_ERROR, "Internal error").body(self.request_id)])
            finally:
                connection.close()  # a thread of its own: its connection would otherwise outlive it

        threading.Thread(target=log_context.carried(work), name="mcp-tool-call", daemon=True).start()
        while True:
            item = events.get()
            if isinstance(item, list):
                for frame in item:
                    yield rpc.sse_frame(frame)
                return
            type_, data = item
            done += 1
            params = {"progressToken": progress_token, "progress": done, "total": total}
            if self.version != "2024-11-05":  # `message` arrived in 2025-03-26
                params["message"] = f"node {data.get('node_id', '?')} {_PROGRESS_EVENTS[type_]}"
            yield rpc.sse_frame({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})
