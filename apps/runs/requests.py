"""Parsing of run requests. Each endpoint accepts exactly its documented top-level fields: anything
else (`connections`, `user_id` on invoke, ...) is refused by name, because credentials and connection
choices can never be overridden per request."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

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

    @property
    def options(self) -> dict[str, bool]:
        return {
            "last_node_output": self.last_node_output,
            "error_on_node_failure": self.error_on_node_failure,
            "stream": self.mode == "stream",
        }


def _refuse_unknown(data, allowed: tuple[str, ...]) -> None:
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


class _Base(serializers.Serializer):
    input = serializers.DictField(required=True)
    stream = serializers.BooleanField(required=False, default=False)
    last_node_output = serializers.BooleanField(required=False, default=False)
    error_on_node_failure = serializers.BooleanField(required=False, default=False)


class _RunsSerializer(_Base):
    user_id = serializers.CharField(required=False, min_length=1, max_length=255)
    session_id = serializers.CharField(required=False, min_length=1, max_length=255)
    background = serializers.BooleanField(required=False, default=False)
    file_ids = serializers.ListField(child=serializers.UUIDField(), required=False, default=list, max_length=20)


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


class _InvokeSerializer(_Base):
    execution_mode = serializers.ChoiceField(choices=["sync", "async"], required=False, default="sync")
    callbacks = _CallbackSerializer(many=True, required=False, default=list)


def _validated(serializer_class, data) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise BadRequest("Invalid request.", details=serializer.errors)
    return serializer.validated_data


def parse_runs_request(data, *, has_files: bool = False, idempotency_key: str = "") -> RunRequest:
    """`POST /v1/runs`."""
    _refuse_unknown(data, RUNS_FIELDS)
    v = _validated(_RunsSerializer, _plain(data))
    if v["background"] and v["stream"]:
        raise BadRequest("background and stream cannot be combined.", details={"background": ["conflicts with stream"]})
    mode = "background" if v["background"] else "stream" if v["stream"] else "sync"
    return RunRequest(
        input=v["input"], mode=mode, user_id=v.get("user_id", ""), session_id=v.get("session_id", ""),
        last_node_output=v["last_node_output"], error_on_node_failure=v["error_on_node_failure"],
        file_ids=[str(x) for x in v["file_ids"]], idempotency_key=idempotency_key,
    )


def parse_invoke_request(data, *, has_files: bool = False, idempotency_key: str = "") -> RunRequest:
    """Direct invoke `POST /`."""
    _refuse_unknown(data, INVOKE_FIELDS)
    v = _validated(_InvokeSerializer, _plain(data))
    is_async = v["execution_mode"] == "async"
    if v["stream"] and is_async:
        raise BadRequest("stream cannot be combined with async execution.", details={"stream": ["conflicts with async"]})
    if v["callbacks"] and not is_async:
        raise BadRequest("callbacks need execution_mode async.", details={"callbacks": ["only with async"]})
    if len(v["callbacks"]) > MAX_CALLBACKS:
        raise BadRequest("Too many callbacks.", details={"callbacks": [f"at most {MAX_CALLBACKS}"]})
    mode = "async" if is_async else "stream" if v["stream"] else "sync"
    return RunRequest(
        input=v["input"], mode=mode, last_node_output=v["last_node_output"],
        error_on_node_failure=v["error_on_node_failure"],
        callbacks=[dict(c) for c in v["callbacks"]], idempotency_key=idempotency_key,
    )
