"""Parsing of run requests. Each endpoint accepts exactly its documented top-level fields: anything
else (`connections`, `user_id` on invoke, ...) is refused by name, because credentials and connection
choices can never be overridden per request."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.utils.crypto import salted_hmac
from rest_framework import serializers

from apps.core.errors import BadRequest

RUNS_FIELDS = ("input", "user_id", "session_id", "background", "stream", "last_node_output",
               "error_on_node_failure", "files", "file_ids")
INVOKE_FIELDS = ("input", "stream", "last_node_output", "error_on_node_failure", "files", "execution_mode",
                 "callbacks")
MAX_CALLBACKS = 5


@dataclass
class RunRequest:
    input: dict[str, Any]
    mode: str = "sync"  # sync | stream | background | async
    user_id: str = ""
    session_id: str = ""
    last_node_output: bool = False
    error_on_node_failure: bool = False
    file_ids: list[str] = field(default_factory=list)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    idempotency_key: str = ""
    # Who asked, digested (SPEC.md section 12): an Idempotency-Key means something only within one scope.
    idempotency_scope: str = ""
    # What was asked, digested before any upload is stored (see `body_fingerprint`).
    fingerprint: str = ""

    @property
    def options(self) -> dict[str, bool]:
        return {
            "last_node_output": self.last_node_output,
            "error_on_node_failure": self.error_on_node_failure,
            "stream": self.mode == "stream",
        }


def idempotency_scope(*, access_key_id: str | None, user_id: str, endpoint: str) -> str:
    """The scope of an Idempotency-Key within an App: (access key or anonymous, user_id, endpoint)."""
    parts = [f"key:{access_key_id}" if access_key_id else "anonymous", f"user:{user_id}", f"endpoint:{endpoint}"]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def body_fingerprint(request: RunRequest, *, uploads: list[dict[str, Any]] = ()) -> str:
    """A keyed digest of everything the body asked for (input, mode, options, user, files, callbacks):
    a repeat of the key with another body is refused. Keyed (HMAC from SECRET_KEY), because the body
    can hold a callback's bearer token and a plain hash of a short secret is guessable."""
    canonical = json.dumps({
        "input": request.input, "mode": request.mode, "user_id": request.user_id, "session_id": request.session_id,
        "options": request.options, "file_ids": request.file_ids, "callbacks": request.callbacks,
        "uploads": list(uploads),
    }, sort_keys=True, separators=(",", ":"), default=str)
    return salted_hmac("apps.runs.idempotency.fingerprint", canonical, algorithm="sha256").hexdigest()


def _refuse_unknown(data, allowed: tuple[str, ...]) -> None:
    if not hasattr(data, "keys"):  # a JSON array, string, number or null: not a body of named fields
        raise BadRequest("The request body must be a JSON object.")
    unknown = sorted(set(data.keys()) - set(allowed))
    if unknown:
        raise BadRequest(
            f"Unknown field(s): {', '.join(unknown)}. Connections and credentials cannot be overridden per "
            "request: bind the node to a requirement and send user_id (runs API), or edit the Connection.",
            details={name: ["unknown field"] for name in unknown},
        )


def _plain(data) -> dict[str, Any]:
    """JSON body as is; for multipart, fields arrive as strings: decode `input`/`callbacks`/lists as JSON."""
    if hasattr(data, "getlist"):  # QueryDict (multipart)
        plain: dict[str, Any] = {}
        for key in data.keys():
            if key == "files":
                continue
            value = data.get(key)
            if key in ("input", "callbacks", "file_ids"):
                try:
                    value = json.loads(value)
                except (TypeError, ValueError):
                    raise BadRequest("Invalid request.", details={key: ["must be JSON in a multipart request"]})
            plain[key] = value
        return plain
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    return data


class _Fields:
    """Reads typed top-level fields, collecting DRF-style errors (`{"field": ["message"]}`).

    Hand-written rather than a DRF Serializer: this runs on every synchronous run, and a Serializer
    deep-copies its declared fields on each instantiation (about a third of a millisecond here).
    Multipart bodies carry every value as a string, hence the string forms of booleans.
    """

    TRUE = frozenset({"true", "True", "1", "on", "yes"})
    FALSE = frozenset({"false", "False", "0", "off", "no", ""})

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.errors: dict[str, list[str]] = {}

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def input(self) -> dict[str, Any]:
        if "input" not in self.data:
            self.fail("input", "This field is required.")
        elif not isinstance(self.data["input"], dict):
            self.fail("input", "Expected a dictionary of items.")
        else:
            return self.data["input"]
        return {}

    def boolean(self, name: str) -> bool:
        value = self.data.get(name, False)
        if isinstance(value, bool):
            return value
        if value in (0, 1) and not isinstance(value, float):
            return bool(value)
        if isinstance(value, str) and value in self.TRUE | self.FALSE:
            return value in self.TRUE
        self.fail(name, "Must be a valid boolean.")
        return False

    def text(self, name: str, *, max_length: int = 255) -> str:
        value = self.data.get(name)
        if value is None:
            return ""
        if not isinstance(value, str) or not value:
            self.fail(name, "Must be a non-empty string.")
        elif len(value) > max_length:
            self.fail(name, f"Ensure this field has no more than {max_length} characters.")
        else:
            return value
        return ""

    def uuid_list(self, name: str, *, max_length: int) -> list[str]:
        value = self.data.get(name, [])
        if not isinstance(value, list):
            self.fail(name, "Expected a list of items.")
            return []
        if len(value) > max_length:
            self.fail(name, f"Ensure this field has no more than {max_length} elements.")
            return []
        result = []
        for item in value:
            try:
                result.append(str(uuid.UUID(str(item))))
            except ValueError:
                self.fail(name, f"'{item}' is not a valid UUID.")
        return result

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.data.get(name, default)
        if value not in choices:
            self.fail(name, f"Must be one of: {', '.join(choices)}.")
            return default
        return value

    def raise_if_invalid(self) -> None:
        if self.errors:
            raise BadRequest("Invalid request.", details=self.errors)


class _CallbackAuthSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["bearer"])
    token = serializers.CharField(max_length=4096)


class _CallbackSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2000)
    auth = _CallbackAuthSerializer(required=False)
    metadata = serializers.JSONField(required=False)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - {"url", "auth", "metadata"})
            if unknown:
                raise serializers.ValidationError({k: ["unknown field"] for k in unknown})
        return super().to_internal_value(data)


def _callbacks(fields: _Fields) -> list[dict[str, Any]]:
    value = fields.data.get("callbacks")
    if value in (None, []):
        return []
    serializer = _CallbackSerializer(data=value, many=True)
    if not serializer.is_valid():
        fields.errors["callbacks"] = serializer.errors
        return []
    return [dict(c) for c in serializer.validated_data]


def parse_runs_request(data, *, idempotency_key: str = "") -> RunRequest:
    """`POST /v1/runs`."""
    _refuse_unknown(data, RUNS_FIELDS)
    fields = _Fields(_plain(data))
    request = RunRequest(
        input=fields.input(), user_id=fields.text("user_id"), session_id=fields.text("session_id"),
        last_node_output=fields.boolean("last_node_output"), error_on_node_failure=fields.boolean("error_on_node_failure"),
        file_ids=fields.uuid_list("file_ids", max_length=20), idempotency_key=idempotency_key,
    )
    background, stream = fields.boolean("background"), fields.boolean("stream")
    fields.raise_if_invalid()
    if background and stream:
        raise BadRequest("background and stream cannot be combined.", details={"background": ["conflicts with stream"]})
    request.mode = "background" if background else "stream" if stream else "sync"
    return request


def parse_invoke_request(data, *, idempotency_key: str = "") -> RunRequest:
    """Direct invoke `POST /`."""
    _refuse_unknown(data, INVOKE_FIELDS)
    fields = _Fields(_plain(data))
    request = RunRequest(
        input=fields.input(), last_node_output=fields.boolean("last_node_output"),
        error_on_node_failure=fields.boolean("error_on_node_failure"), idempotency_key=idempotency_key,
    )
    stream = fields.boolean("stream")
    is_async = fields.choice("execution_mode", ("sync", "async"), "sync") == "async"
    raw_callbacks = fields.data.get("callbacks")
    if isinstance(raw_callbacks, list) and len(raw_callbacks) > MAX_CALLBACKS:
        raise BadRequest("Too many callbacks.", details={"callbacks": [f"at most {MAX_CALLBACKS}"]})
    request.callbacks = _callbacks(fields)
    fields.raise_if_invalid()
    if stream and is_async:
        raise BadRequest("stream cannot be combined with async execution.", details={"stream": ["conflicts with async"]})
    if request.callbacks and not is_async:
        raise BadRequest("callbacks need execution_mode async.", details={"callbacks": ["only with async"]})
    request.mode = "async" if is_async else "stream" if stream else "sync"
    return request
