"""OpenAPI description of the App-host API (drf-spectacular). Documentation only: the views never use
these serializers at run time (the run path serializes with plain functions, `services.serialize_run`
and friends), so each one states exactly what those functions and `requests.py` produce and accept.

Request bodies subclass `ClosedRequestSerializer`: the API refuses unknown top-level fields, and the
schema generator (apps.management_api.schema) marks their components `additionalProperties: false`.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from apps.core.schema import ErrorSerializer, error_responses, request_example, response_example, with_examples

from .files import MAX_FILES_PER_RUN
from .models import Run
from .requests import MAX_CALLBACKS

TAG = "app host"  # the tag apps.management_api.schema gives App-host operations (APP_HOST_TAG)

PUBLIC_APPS = (
    "\n\nAuthentication: an access key of the App's project or organization (`Authorization: Bearer "
    "dynamiq_acc_...`); a key of another project or organization gets 403. A **public** App accepts without a "
    "key only what acts as no end user: invoke, runs without `user_id`, and reading, streaming or canceling such "
    "runs by ID. Anything per user (`user_id`, runs list, requirement status, connect tokens) needs a key, and so do "
    "uploads unless the App sets `allow_anonymous_uploads`."
)


# Examples (one story: user-42 asks the invoice bot; IDs agree across examples)

_RUN_ID = "c5d6e7f8-091a-4b2c-8d3e-4f5a6b7c8dfc"
_APP_ID = "4d5e6f70-8192-43a4-b5c6-d7e8f9a0b1a7"
_FILE_ID = "d6e7f809-1a2b-4c3d-9e4f-5a6b7c8d9e0d"
_STREAM_URL = f"http://{_APP_ID}.apps.localhost:8000/v1/runs/{_RUN_ID}/stream?token=<run-scoped token>"
_INPUT = {"question": "Summarize my latest invoices"}
_CONNECTION = {"connection_id": "b4c5d6e7-f809-4a1b-8c3d-4e5f6a7b8ceb", "owner": "end_user", "user_id": "user-42",
               "requirement_id": "9f8e7d6c-5b4a-4392-8187-6f5e4d3c2b74"}
_RUN = {
    "id": _RUN_ID, "app_id": _APP_ID, "status": "completed", "input": _INPUT,
    "output": {"invoices": [{"number": "INV-1042", "total": 1280.0, "status": "paid"}]},
    "error": None, "user_id": "user-42", "session_id": None, "created_at": "2025-01-16T14:05:00.120000Z",
    "started_at": "2025-01-16T14:05:00.121000Z", "ended_at": "2025-01-16T14:05:00.389000Z",
    "nodes": {"input": {"status": "success", "duration_ms": 0.05},
              "invoices": {"status": "success", "connection": _CONNECTION, "duration_ms": 265.4},
              "output": {"status": "success", "duration_ms": 0.2}},
}
_FAILED_ERROR = {"code": "node_failed", "message": "Node invoices failed: The upstream answered 500 Internal Server Error",
                 "node_id": "invoices", "type": "http_error", "details": {"node_id": "invoices", "type": "http_error"}}
RUN_EXAMPLES = [
    response_example("Completed", _RUN),
    response_example("Failed: a node failed, so the output could not be computed", {
        **_RUN, "status": "failed", "output": None, "error": _FAILED_ERROR,
        "nodes": {"input": {"status": "success", "duration_ms": 0.05},
                  "invoices": {"status": "failure", "connection": _CONNECTION, "duration_ms": 131.9,
                               "error": {"type": "http_error", "message": "The upstream answered 500 Internal Server Error",
                                         "status_code": 500}},
                  "output": {"status": "skipped"}},
    }),
]
RUN_STARTED_EXAMPLE = response_example("Accepted in the background", {
    **_RUN, "status": "created", "output": None, "started_at": None, "ended_at": None, "nodes": {},
    "stream_url": _STREAM_URL,
}, status_codes=[202])
RUN_ACCEPTED_EXAMPLE = response_example("Accepted (async)", {"id": _RUN_ID, "status": "accepted", "stream_url": _STREAM_URL},
                                        status_codes=[202])
INVOKE_EXAMPLES = [
    request_example("Synchronous", {"input": _INPUT}),
    request_example("Async, with a signed callback", {
        "input": _INPUT, "execution_mode": "async",
        "callbacks": [{"url": "https://app.example.com/hooks/runs", "auth": {"type": "bearer", "token": "<your token>"},
                       "metadata": {"ticket": "T-17"}}],
    }),
]
RUN_CREATE_EXAMPLES = [
    request_example("As user-42", {"input": _INPUT, "user_id": "user-42"}),
    request_example("In the background", {"input": _INPUT, "user_id": "user-42", "background": True}),
]
EVENT_EXAMPLE = response_example("node.completed", {
    "id": "e7f8091a-2b3c-4d4e-8f5a-6b7c8d9e0f1e", "type": "node.completed", "sequence": 5,
    "timestamp": "2025-01-16T14:05:00.388000Z",
    "data": {"node_id": "invoices", "type": "http", "output": {"status_code": 200, "headers": {}, "body": []},
             "duration_ms": 265.4},
})
SSE_RUN_EVENT_EXAMPLES = [
    response_example("run.started", {"event": "run.started", "id": "2", "data": (
        '{"id": "f8091a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2f", "type": "run.started", "sequence": 2, '
        '"timestamp": "2025-01-16T14:05:00.121000Z", "data": {}}')}),
    response_example("run.failed", {"event": "run.failed", "id": "7", "data": (
        '{"id": "091a2b3c-4d5e-4f6a-8b7c-8d9e0f1a2b30", "type": "run.failed", "sequence": 7, '
        '"timestamp": "2025-01-16T14:05:00.389000Z", "data": {"status": "failed", "error": {"code": "node_failed", '
        '"message": "Node invoices failed: The upstream answered 500 Internal Server Error", "node_id": "invoices", '
        '"type": "http_error", "details": {"node_id": "invoices", "type": "http_error"}}}}')}),
]
SSE_INVOKE_EXAMPLES = [
    response_example("A content delta", {"data": '{"event": "data", "data": {"choices": [{"delta": {"content": "Your "}}]}}'}),
    response_example("The final frame", {"data": (
        f'{{"event": "data", "data": {{"id": "{_RUN_ID}", "status": "completed", "output": {{"answer": "Your last '
        f'invoice, INV-1042, is paid."}}, "error": null}}}}')}),
]
FILE_EXAMPLE = response_example("An uploaded file", {"id": _FILE_ID, "name": "invoice-1042.pdf", "size": 48213,
                                                      "mime_type": "application/pdf"})
CANCEL_EXAMPLE = response_example("Canceled", {"message": "canceled"})
REQUIREMENTS_STATUS_EXAMPLE = response_example("user-42 has not linked the billing account", {
    "status": "incomplete",
    "unsatisfied": [{"id": "9f8e7d6c-5b4a-4392-8187-6f5e4d3c2b74", "type": "http_api_key", "name": "billing",
                     "form": {"title": "Your billing account", "description": "The API key of your billing account."},
                     "spec": {"connection_type": "http_api_key"}, "workflow_id": "3c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e63"}],
})


# Requests


class ClosedRequestSerializer(serializers.Serializer):
    # A documented request body whose unknown top-level fields are refused with 400 (a comment, not a
    # docstring: drf-spectacular would copy a docstring into every schema).
    pass


class CallbackAuthSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["bearer"])
    token = serializers.CharField(max_length=4096)


class CallbackSerializer(ClosedRequestSerializer):
    url = serializers.URLField(max_length=2000, help_text="HTTPS, resolving to a public address.")
    auth = CallbackAuthSerializer(required=False, help_text="Sent as `Authorization: Bearer <token>`.")
    metadata = serializers.JSONField(required=False, help_text="Echoed in the callback body.")


_INPUT_HELP = "The Input node's fields."
_JSON_PART = " In a multipart request: this object, JSON-encoded."


class _RunOptionsSerializer(ClosedRequestSerializer):
    stream = serializers.BooleanField(required=False, default=False, help_text="Answer as Server-Sent Events.")
    last_node_output = serializers.BooleanField(required=False, default=False,
                                                help_text="Return only the final node's output.")
    error_on_node_failure = serializers.BooleanField(
        required=False, default=False, help_text="Any node failure fails the request (502 `node_failed`).")


class _InvokeFieldsSerializer(_RunOptionsSerializer):
    execution_mode = serializers.ChoiceField(
        choices=["sync", "async"], required=False, default="sync",
        help_text="`async`: 202 `{id, status: accepted}` at once; the run's end is POSTed to the callbacks.")


@with_examples(*INVOKE_EXAMPLES)
class InvokeSerializer(_InvokeFieldsSerializer):
    input = serializers.DictField(help_text=_INPUT_HELP)
    callbacks = CallbackSerializer(many=True, required=False, max_length=MAX_CALLBACKS,
                                   help_text="Only with `execution_mode: async`.")


class InvokeMultipartSerializer(_InvokeFieldsSerializer):
    input = serializers.CharField(help_text=_INPUT_HELP + _JSON_PART)
    callbacks = serializers.CharField(required=False, help_text="The callbacks array, JSON-encoded (async only).")
    files = serializers.ListField(child=serializers.FileField(), required=False, max_length=MAX_FILES_PER_RUN,
                                  help_text="Uploads; each becomes a File of this App, given to the run.")


class _RunsFieldsSerializer(_RunOptionsSerializer):
    user_id = serializers.CharField(required=False, min_length=1, max_length=255,
                                    help_text="The end user whose linked connections satisfy the requirements.")
    session_id = serializers.CharField(required=False, min_length=1, max_length=255)
    background = serializers.BooleanField(required=False, default=False,
                                          help_text="202 with the Run (status `created`) at once; not with `stream`.")


@with_examples(*RUN_CREATE_EXAMPLES)
class RunCreateSerializer(_RunsFieldsSerializer):
    input = serializers.DictField(help_text=_INPUT_HELP)
    file_ids = serializers.ListField(child=serializers.UUIDField(), required=False, max_length=MAX_FILES_PER_RUN,
                                     help_text="Files of this App (POST /v1/files).")


class RunCreateMultipartSerializer(_RunsFieldsSerializer):
    input = serializers.CharField(help_text=_INPUT_HELP + _JSON_PART)
    file_ids = serializers.CharField(required=False, help_text="The file_ids array, JSON-encoded.")
    files = serializers.ListField(child=serializers.FileField(), required=False, max_length=MAX_FILES_PER_RUN)


class FileUploadSerializer(ClosedRequestSerializer):
    file = serializers.FileField()


# Responses


class NodeConnectionSerializer(serializers.Serializer):
    connection_id = serializers.CharField()
    owner = serializers.ChoiceField(choices=["project", "end_user"])
    user_id = serializers.CharField(allow_null=True)
    requirement_id = serializers.CharField(allow_null=True)


class NodeSummarySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["success", "failure", "skipped"])
    error = serializers.DictField(required=False, help_text="`{type, message, ...}`, never a credential.")
    connection = NodeConnectionSerializer(required=False, help_text="Which connection the node used (IDs only).")
    duration_ms = serializers.FloatField(required=False)


class RunErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text=(
        "`node_failed` (a node failed and the output could not be computed, or `error_on_node_failure`), "
        "`requirements_unsatisfied`, `canceled`, `internal_error`."))
    message = serializers.CharField()
    node_id = serializers.CharField(required=False, help_text="`node_failed`: the node that failed.")
    type = serializers.CharField(required=False, help_text="`node_failed`: the node's error type, e.g. `http_error`.")
    details = serializers.DictField()


@with_examples(*RUN_EXAMPLES)
class RunSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    app_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Run.Status.choices)
    input = serializers.DictField()
    output = serializers.JSONField(allow_null=True, help_text="The Output node's fields (null unless completed).")
    error = RunErrorSerializer(allow_null=True, help_text="Why the run failed or was canceled; null otherwise.")
    user_id = serializers.CharField(allow_null=True)
    session_id = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    nodes = serializers.DictField(child=NodeSummarySerializer(), help_text="By node ID.")


_STREAM_URL_HELP = (
    "The run's Server-Sent Events URL (`.../v1/runs/{id}/stream?token=...`, on the host this request came in on) "
    "with a read-only token for this run only, valid for STREAM_TOKEN_TTL_SECONDS (10 minutes by default): a "
    "browser `EventSource` can follow it without an Authorization header.")


@with_examples(RUN_ACCEPTED_EXAMPLE)
class RunAcceptedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=["accepted"])
    stream_url = serializers.URLField(help_text=_STREAM_URL_HELP)


@with_examples(RUN_STARTED_EXAMPLE)
class RunStartedSerializer(RunSerializer):
    # A background run's 202: the Run (status `created`) and where to follow it.
    stream_url = serializers.URLField(help_text=_STREAM_URL_HELP)


@with_examples(EVENT_EXAMPLE)
class RunEventSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField(help_text="`run.created`, `run.started`, `node.started`, `node.completed`, "
                                           "`node.failed`, `node.skipped`, `llm.delta`, `run.completed`, "
                                           "`run.failed`, `run.canceled`.")
    sequence = serializers.IntegerField(min_value=1)
    timestamp = serializers.DateTimeField()
    data = serializers.DictField()


@with_examples(FILE_EXAMPLE)
class FileSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    size = serializers.IntegerField(min_value=0)
    mime_type = serializers.CharField()


@with_examples(CANCEL_EXAMPLE)
class CancelSerializer(serializers.Serializer):
    message = serializers.CharField()


class RequirementFormSerializer(serializers.Serializer):
    title = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)


class UnsatisfiedRequirementSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField(help_text="The connection type the requirement needs.")
    name = serializers.CharField()
    form = RequirementFormSerializer()
    spec = serializers.DictField()
    workflow_id = serializers.UUIDField()


@with_examples(REQUIREMENTS_STATUS_EXAMPLE)
class RequirementsStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["complete", "incomplete"])
    unsatisfied = UnsatisfiedRequirementSerializer(many=True)



# Server-Sent Events. In OpenAPI 3.0 the schema of a `text/event-stream` answer describes one event (the
# fields of an SSE frame), as tools that read event streams (e.g. schemathesis) take it.
SSE_RUN_EVENT_FRAME = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "pattern": "^(run|node|llm)\\.", "description": "The event's `type`."},
        "id": {"type": "string", "pattern": "^[1-9][0-9]*$", "description": "The event's `sequence`."},
        "data": {"type": "string", "description": "The RunEvent, JSON-encoded: `{id, type, sequence, timestamp, data}`."},
    },
    "required": ["event", "id", "data"],
}
SSE_INVOKE_FRAME = {
    "type": "object",
    "properties": {
        "data": {"type": "string", "description": 'JSON: `{"event": "data", "data": {"choices": [{"delta": {"content"}}]}}` '
                                                  'per LLM delta; the last frame `{"event": "data", "data": {"id", '
                                                  '"status", "output", "error"}}`.'},
    },
    "required": ["data"],
}
SSE_RUN_EVENTS = OpenApiResponse(
    SSE_RUN_EVENT_FRAME, examples=SSE_RUN_EVENT_EXAMPLES,
    description="`text/event-stream`: one frame per run event (`event: <type>`, `id: <sequence>`, "
                "`data: <RunEvent JSON>`) in sequence order, `: heartbeat` every 15 s when idle; the stream closes "
                "after `run.completed`, `run.failed` or `run.canceled`. Header `X-Run-Id`; a stream that starts a run also "
                "has `X-Stream-Url` (see `stream_url`).",
)
SSE_INVOKE = OpenApiResponse(
    SSE_INVOKE_FRAME, examples=SSE_INVOKE_EXAMPLES,
    description='`text/event-stream` (with `stream: true`): `data: {"event": "data", "data": {"choices": '
                '[{"delta": {"content": "..."}}]}}` per LLM delta, then one final frame `data: {"event": "data", '
                '"data": {"id", "status", "output", "error"}}`, then the stream ends. Headers `X-Run-Id` and `X-Stream-Url` '
                '(the run\'s event stream with a run-scoped token, see `stream_url`).',
)

_NOT_FOUND = "No such App (on the `/apps/{app_id}` alias), or no such object in this App."
NODE_FAILED = OpenApiResponse(
    ErrorSerializer, description="`node_failed`: a node failed and the request asked for `error_on_node_failure` "
                                 "(`details.run_id` names the stored run).")


def app_errors(*codes: int) -> dict:
    """401, 403 and 404 can answer every App-host operation; `codes` adds the others it can give."""
    responses = error_responses(401, 403, 404, *(c for c in codes if c != 502), _404=_NOT_FOUND,
                                _409="`requirements_unsatisfied` (the user has not linked what the workflow needs; "
                                     "`details.run_id`), or the App has no deployed version.")
    if 502 in codes:
        responses[502] = NODE_FAILED
    if 413 in codes:
        responses[413] = OpenApiResponse(ErrorSerializer, description=(
            "`payload_too_large`: the body is over the request limit, a file over MAX_UPLOAD_BYTES, or the files "
            "would exceed the App's storage quota (APP_STORAGE_QUOTA_BYTES)."))
    return responses


PAGE_PARAMETERS = [
    OpenApiParameter("page", {"type": "integer", "minimum": 1}, description="1-based page number."),
    OpenApiParameter("page_size", {"type": "integer", "minimum": 1, "maximum": 100},
                     description="Items per page (1-100, default 20)."),
]
RUN_FILTERS = [
    OpenApiParameter("status", {"type": "array", "items": {"type": "string", "enum": Run.Status.values}},
                     style="form", explode=True, description="Only runs in these statuses (repeatable)."),
    OpenApiParameter("user_id", OpenApiTypes.STR, description="Only this end user's runs."),
    OpenApiParameter("session_id", OpenApiTypes.STR, description="Only this session's runs."),
    OpenApiParameter("sort", OpenApiTypes.STR,
                     description="Comma-separated fields, `-` for descending. Sortable: created_at, started_at, "
                                 "ended_at, status. Default `-created_at`."),
]
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", {"type": "string", "maxLength": 255}, location=OpenApiParameter.HEADER,
    description="A repeat within 24 h in the same scope (access key or anonymous, `user_id`, endpoint) with the same "
                "body answers with the first run (or replays its stream) instead of starting another; with another "
                "body it is a 422 `idempotency_key_reused`. In another scope the key starts a new run.",
)
AFTER_SEQUENCE = OpenApiParameter(
    "after_sequence", {"type": "integer", "minimum": 0},
    description="Resume after this event sequence (default 0, or the `Last-Event-ID` header an EventSource sends).")
STREAM_TOKEN = OpenApiParameter(
    "token", OpenApiTypes.STR,
    description="The token of a `stream_url`: opens this run's stream (only) without an Authorization header. "
                "Tampered, expired or for another run: 401.")
USER_ID = OpenApiParameter("user_id", {"type": "string", "minLength": 1, "maxLength": 255}, required=True,
                           description="The end user (opaque, 1-255 characters).")

