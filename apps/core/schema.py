"""OpenAPI building blocks shared by every API of the project (drf-spectacular).

The response envelopes are real serializers, so the schema states exactly what views return:
`{"data": ...}`, `{"data": [...], "pagination": {...}}` and `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from drf_spectacular import openapi
from drf_spectacular.drainage import get_override
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema_serializer
from rest_framework import serializers

from .errors import error_codes


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


class PaginationSerializer(serializers.Serializer):
    page = serializers.IntegerField(min_value=1)
    page_size = serializers.IntegerField(min_value=1)
    page_count = serializers.IntegerField(min_value=0)
    total_count = serializers.IntegerField(min_value=0)


# Examples. A serializer carries its own (`with_examples`), so every operation that answers or accepts it shows
# them; `envelope()` and `page()` wrap the examples of the serializer they wrap.


def request_example(name: str, value: Any, *, summary: str | None = None) -> OpenApiExample:
    return OpenApiExample(name, value=value, summary=summary, request_only=True)


def response_example(name: str, value: Any, *, summary: str | None = None, status_codes=None) -> OpenApiExample:
    return OpenApiExample(name, value=value, summary=summary, response_only=True, status_codes=status_codes)


def with_examples(*examples: OpenApiExample):
    """Class decorator: these examples wherever the serializer is a request body or an answer."""
    return extend_schema_serializer(examples=list(examples))


def _wrapped_examples(serializer_class: type, wrap) -> list[OpenApiExample]:
    return [
        response_example(example.name, wrap(example.value), summary=example.summary, status_codes=example.status_codes)
        for example in get_override(serializer_class, "examples", [])
        if not example.request_only
    ]


EXAMPLE_PAGINATION = {"page": 1, "page_size": 20, "page_count": 1, "total_count": 1}


@cache
def envelope(serializer_class: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """`{"data": <object>}` as a schema component (`Connection` → `ConnectionEnvelope`)."""
    name = serializer_class.__name__.removesuffix("Serializer") + "EnvelopeSerializer"
    wrapper = type(name, (serializers.Serializer,), {"data": serializer_class()})
    return with_examples(*_wrapped_examples(serializer_class, lambda value: {"data": value}))(wrapper)


@cache
def page(serializer_class: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """`{"data": [<object>...], "pagination": {...}}` as a schema component (`Connection` → `ConnectionPage`)."""
    name = serializer_class.__name__.removesuffix("Serializer") + "PageSerializer"
    wrapper = type(name, (serializers.Serializer,), {"data": serializer_class(many=True), "pagination": PaginationSerializer()})
    examples = _wrapped_examples(serializer_class, lambda value: {"data": [value], "pagination": EXAMPLE_PAGINATION})
    return with_examples(*examples)(wrapper)


ERROR_DESCRIPTIONS = {
    400: "Invalid request (`details` per field).",
    401: "Missing, invalid, expired or revoked credentials.",
    403: "Authenticated, but not allowed.",
    404: "Not found.",
    405: "Method not allowed.",
    409: "Conflict.",
    413: "Payload too large.",
    415: "Unsupported media type.",
    422: "`idempotency_key_reused`: the Idempotency-Key was already used, in the same scope, with another body.",
    429: "Rate limited.",
}


ERROR_CODE_COMPONENT = "ErrorCode"


def document_error_codes(schema: dict) -> dict:
    """Make `error.code` of the envelope a documented enum: the component `ErrorCode`, its values and their
    HTTP statuses read from apps.core.errors.error_codes() (the one source; nothing listed here)."""
    codes = error_codes()
    lines = "\n".join(f"* `{code}` - {status}" for code, status in codes.items())
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR_CODE_COMPONENT] = {
        "type": "string",
        "enum": list(codes),
        "description": "The error's code, and the HTTP status it is answered with:\n\n" + lines,
    }
    schemas["ErrorBody"]["properties"]["code"] = {"$ref": f"#/components/schemas/{ERROR_CODE_COMPONENT}"}
    return schema


def error_responses(*codes: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """Error answers for `extend_schema(responses=...)`; `descriptions` overrides by code (`_404="..."`)."""
    return {
        code: OpenApiResponse(ErrorSerializer, description=descriptions.get(f"_{code}", ERROR_DESCRIPTIONS[code]))
        for code in codes
    }


RATE_LIMITED_EXAMPLE = {
    "error": {
        "code": "rate_limited",
        "message": "Too many requests: at most 600 per 60 s for this access key. Retry after 12 s.",
        "details": {"scope": "runs", "limit": 600, "period_seconds": 60, "retry_after": 12},
    }
}


class AutoSchema(openapi.AutoSchema):
    """The project's DEFAULT_SCHEMA_CLASS: drf-spectacular's, plus the `429 rate_limited` answer (with its
    Retry-After header) on every operation its view rate-limits (`rate_limits`, apps.core.ratelimit): read from
    the same declaration the throttle reads, so the document cannot miss a limited operation."""

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is not None and self.method in getattr(self.view, "rate_limits", {}):
            operation["responses"]["429"] = {
                "description": "`rate_limited`: over this caller's rate limit (per access key, connect token, or "
                               "client address without a key). Retry after the seconds in `Retry-After`.",
                "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1},
                                            "description": "Seconds until the limit's window ends."}},
                "content": {"application/json": {
                    "schema": self.resolve_serializer(ErrorSerializer, "response").ref,
                    "examples": {"RateLimited": {"value": RATE_LIMITED_EXAMPLE}},
                }},
            }
        return operation
