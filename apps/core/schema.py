"""OpenAPI building blocks shared by every API of the project (drf-spectacular).

The response envelopes are real serializers, so the schema states exactly what views return:
`{"data": ...}`, `{"data": [...], "pagination": {...}}` and `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

from functools import cache

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


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


@cache
def envelope(serializer_class: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """`{"data": <object>}` as a schema component (`Connection` → `ConnectionEnvelope`)."""
    name = serializer_class.__name__.removesuffix("Serializer") + "EnvelopeSerializer"
    return type(name, (serializers.Serializer,), {"data": serializer_class()})


@cache
def page(serializer_class: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """`{"data": [<object>...], "pagination": {...}}` as a schema component (`Connection` → `ConnectionPage`)."""
    name = serializer_class.__name__.removesuffix("Serializer") + "PageSerializer"
    return type(name, (serializers.Serializer,), {"data": serializer_class(many=True), "pagination": PaginationSerializer()})


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


def error_responses(*codes: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """Error answers for `extend_schema(responses=...)`; `descriptions` overrides by code (`_404="..."`)."""
    return {
        code: OpenApiResponse(ErrorSerializer, description=descriptions.get(f"_{code}", ERROR_DESCRIPTIONS[code]))
        for code in codes
    }
