"""One error model: services raise ApplicationError subclasses; every API error leaves as
`{"error": {"code", "message", "details"}}`. Never a traceback, never a secret."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

from .outage import is_database_unavailable, record_database_unavailable, retry_after

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    code = "bad_request"
    status = 400

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code


class BadRequest(ApplicationError):
    code, status = "bad_request", 400


class Unauthorized(ApplicationError):
    code, status = "unauthorized", 401


class Forbidden(ApplicationError):
    code, status = "forbidden", 403


class NotFound(ApplicationError):
    code, status = "not_found", 404


class Conflict(ApplicationError):
    code, status = "conflict", 409


class RequirementsUnsatisfied(ApplicationError):
    code, status = "requirements_unsatisfied", 409


class NodeFailed(ApplicationError):
    """A node failed in a run that asked for `error_on_node_failure`: the upstream side failed, not the caller."""

    code, status = "node_failed", 502


class IdempotencyKeyReused(ApplicationError):
    """The Idempotency-Key was used in the same scope with a different body (SPEC.md section 12)."""

    code, status = "idempotency_key_reused", 422


class ServiceUnavailable(ApplicationError):
    """The database cannot be reached (SPEC §15): answered with Retry-After, see apps.core.outage."""

    code, status = "service_unavailable", 503


class RateLimited(ApplicationError):
    """Over a rate limit (SPEC §15, apps.core.ratelimit): answered with Retry-After, in seconds."""

    code, status = "rate_limited", 429

    def __init__(self, message: str, *, retry_after: int, details: dict[str, Any] | None = None):
        super().__init__(message, details=details)
        self.retry_after = retry_after


class PayloadTooLarge(ApplicationError):
    code, status = "payload_too_large", 413


class UnsupportedMediaType(ApplicationError):
    code, status = "unsupported_media_type", 415


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(code: str, message: str, status: int, details: dict[str, Any] | None = None) -> JsonResponse:
    """For plain Django views and middleware (outside DRF's exception handling)."""
    return JsonResponse(error_body(code, message, details), status=status)


DATABASE_UNAVAILABLE_MESSAGE = "The service is temporarily unavailable: its database cannot be reached. Retry later."


def database_unavailable_response(exc: BaseException) -> JsonResponse:
    """503 `service_unavailable` + Retry-After for plain Django views and middleware; logged by
    apps.core.outage (one line per incident), so Django's request logger is told not to log it again
    (no "Service Unavailable" line with a traceback per request)."""
    record_database_unavailable(exc)
    response = error_response("service_unavailable", DATABASE_UNAVAILABLE_MESSAGE, 503)
    response["Retry-After"] = retry_after()
    response._has_been_logged = True
    return response


def from_django_suspicious(exc: Exception) -> ApplicationError | None:
    """Django's request-parsing refusals (form fields over DATA_UPLOAD_MAX_MEMORY_SIZE, too many fields,
    other SuspiciousOperation) as API errors: 413 for size, 400 otherwise; never a 500."""
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge("The request body is too large.")
    if isinstance(exc, TooManyFieldsSent):
        return BadRequest("Too many fields in the request body.")
    if isinstance(exc, SuspiciousOperation):
        return BadRequest("Invalid request.")
    return None


_DRF_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    422: "idempotency_key_reused",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "service_unavailable",
}


def exception_handler(exc: Exception, context: dict) -> Response:
    """DRF EXCEPTION_HANDLER: map every exception to the envelope; unknown ones to a bare 500."""
    if isinstance(exc, ApplicationError):
        response = Response(error_body(exc.code, exc.message, exc.details), status=exc.status)
        if isinstance(exc, RateLimited):
            response["Retry-After"] = str(exc.retry_after)
        return response
    if is_database_unavailable(exc):
        record_database_unavailable(exc)
        response = Response(error_body("service_unavailable", DATABASE_UNAVAILABLE_MESSAGE), status=503)
        response["Retry-After"] = retry_after()
        response._has_been_logged = True  # logged once per incident above, not once per request by Django
        return response
    mapped = from_django_suspicious(exc)
    if mapped is not None:
        return Response(error_body(mapped.code, mapped.message, mapped.details), status=mapped.status)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = drf_exceptions.ValidationError(detail)
    if isinstance(exc, drf_exceptions.APIException):
        status = exc.status_code
        code = _DRF_CODES.get(status, "bad_request")
        if isinstance(exc, drf_exceptions.ValidationError):
            details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
            message = "Invalid request."
        else:
            details, message = {}, str(exc.detail)
        response = Response(error_body(code, message, details), status=status)
        if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
            response.status_code = 401
            response.data["error"]["code"] = "unauthorized"
            response["WWW-Authenticate"] = 'Bearer realm="api"'
        if getattr(exc, "wait", None):
            response["Retry-After"] = str(int(exc.wait))
        return response
    # Log the type and location only: exception messages can quote request data.
    logger.error("unhandled %s in %s", type(exc).__name__, context.get("view").__class__.__name__)
    return Response(error_body("internal_error", "Internal server error."), status=500)


class InternalError(ApplicationError):
    """An unexpected failure: no traceback, no secret, ever."""

    code, status = "internal_error", 500


def _subclasses(cls: type) -> list[type]:
    found, pending = [], [cls]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(current.__subclasses__())
    return found


def error_codes() -> dict[str, int]:
    """Every `error.code` an API answer can carry, with its HTTP status, in code order: the enum the OpenAPI
    document gives the error envelope (apps.management_api.schema). Read from the code, never kept by hand:
    the codes of ApplicationError and its subclasses (every app's, once imported: the schema generator has
    imported every view) and the codes DRF's own exceptions are mapped to (`_DRF_CODES`)."""
    found = {code: status for status, code in _DRF_CODES.items()}
    for cls in _subclasses(ApplicationError):
        found.setdefault(cls.code, cls.status)
    return dict(sorted(found.items()))
