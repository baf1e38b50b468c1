"""MCP writes: minting a session token, and a tool call (a synchronous run of the App as the caller's end user).

A tool call goes through `apps.runs.services.run_sync`, the service of the synchronous run endpoint: the same
credential resolution (active links only), masking, audit row, metrics and stored Run. What differs is the
answer: a tool result instead of an HTTP status (SPEC §14): a completed run's output as text and structured
content; a failed node, invalid arguments or unsatisfied requirements as `isError: true`, the latter with a
fresh single-use connect link for the user.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apps.connect.services import connect_token_create
from apps.connect.tokens import validate_user_id
from apps.core.errors import BadRequest, Conflict, RequirementsUnsatisfied
from apps.deployments.models import App
from apps.runs.models import Run
from apps.runs.requests import RunRequest
from apps.runs.services import run_sync

from . import tokens

logger = logging.getLogger(__name__)


def mcp_session_create(*, app: App, user_id: str, ttl_seconds: int | None = None) -> tuple[str, datetime]:
    """A session token for one end user of `app`. Returns (token, expires_at)."""
    validate_user_id(user_id)
    token, claims = tokens.mint(app_id=str(app.id), user_id=user_id, ttl=tokens.ttl_seconds(ttl_seconds))
    logger.info("MCP session token minted, valid until %s", claims.expires_at.isoformat())
    return token, claims.expires_at


@dataclass
class ToolCallOutcome:
    result: dict[str, Any]  # a CallToolResult: content, structuredContent, isError, _meta
    outcome: str  # completed | failed | invalid_input | unsatisfied | not_deployed (metrics, logs)
    run_id: str | None = None
    connect_url: str | None = None  # unsatisfied requirements of a known end user: where to link them


def _text(value: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)}]


def _error(structured: dict[str, Any], message: str, *, outcome: str, run_id: str | None = None,
           connect_url: str | None = None) -> ToolCallOutcome:
    result: dict[str, Any] = {"content": [{"type": "text", "text": message}, *_text(structured)],
                              "structuredContent": structured, "isError": True}
    if run_id:
        result["_meta"] = {"run_id": run_id}
    return ToolCallOutcome(result=result, outcome=outcome, run_id=run_id, connect_url=connect_url)


def tool_call(*, app: App, user_id: str, arguments: dict[str, Any],
              observe: Callable[[str, dict[str, Any]], None] | None = None) -> ToolCallOutcome:
    """Run the App with `arguments` as its input, as `user_id` ("" for no end user), and answer a tool result."""
    try:
        run, _ = run_sync(app=app, request=RunRequest(input=arguments, user_id=user_id), observe=observe)
    except RequirementsUnsatisfied as exc:
        unsatisfied = exc.details.get("unsatisfied", [])
        run_id = exc.details.get("run_id")
        connect_url = None
        if user_id:
            # A fresh connect link each time: the hosted page exchange is single-use (SPEC §12).
            _, connect_url, _ = connect_token_create(app=app, user_id=user_id)
            message = ("This tool needs accounts the user has not connected yet. Ask the user to open connect_url, "
                       "connect them, then call the tool again.")
        else:
            message = ("This tool needs the end user's own connected accounts: call it with an MCP session token "
                       "minted for that user (POST /v1/mcp/sessions).")
        structured = {"code": "requirements_unsatisfied", "unsatisfied": unsatisfied, "connect_url": connect_url}
        return _error(structured, message, outcome="unsatisfied", run_id=run_id, connect_url=connect_url)
    except BadRequest as exc:  # the arguments do not fit the input node: a tool error the model can correct
        structured = {"code": "invalid_input", "details": exc.details.get("input", exc.details)}
        return _error(structured, "The arguments do not match the tool's input schema.", outcome="invalid_input")
    except Conflict as exc:  # nothing deployed (any more)
        return _error({"code": "not_deployed"}, exc.message, outcome="not_deployed")
    run_id = str(run.id)
    if run.status == Run.Status.COMPLETED and isinstance(run.output, dict):
        result = {"content": _text(run.output), "structuredContent": run.output, "isError": False,
                  "_meta": {"run_id": run_id}}
        return ToolCallOutcome(result=result, outcome="completed", run_id=run_id)
    error = run.error or {"code": "run_failed", "message": "The run did not complete."}
    structured = {"code": error.get("code", "run_failed"), "error": error, "run_id": run_id}
    message = error.get("message") or "The run failed."
    return _error(structured, f"The run failed: {message}", outcome="failed", run_id=run_id)
