"""Service health and request limits at the door.

`ServiceHealthMiddleware` (first in MIDDLEWARE): answers `/healthz` and `/readyz` before host routing and
the HTTPS redirect, and turns a database outage raised in a view into `503 service_unavailable`.

Request limits at the door (SPEC.md section 12), for every view, DRF or plain Django.

A body whose Content-Length is over the limit is answered 413 before any view, parser or middleware
reads it. Multipart bodies carry uploads and get the upload allowance (files are then checked one by
one by apps.runs.files); every other body gets DATA_UPLOAD_MAX_MEMORY_SIZE. Bodies without a
Content-Length are bounded where they are read (apps.core.parsers, Django's own form limits).
"""

from __future__ import annotations

from django.conf import settings

from . import log_context, views
from .errors import database_unavailable_response, error_response
from .outage import is_database_unavailable

_PROBES = {"/healthz": views.healthz, "/readyz": views.readyz}


class ServiceHealthMiddleware:
    """First middleware: probes answer on any Host, over plain HTTP (SPEC §15).

    A load balancer probes `http://<ip>:<port>/healthz`: AppHostMiddleware refuses IP-literal and unknown
    hosts (400), and SecurityMiddleware redirects plain HTTP with SECURE_SSL_REDIRECT. Neither view needs
    the session, auth or CSRF layers, so answering here costs one dict lookup for every other request.

    process_exception: views that are not DRF's (admin, connect pages) raising a database outage get the
    same 503 as DRF views get from the exception handler; errors raised by middleware reach handler500
    (apps.core.views.server_error), which does the same.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        probe = _PROBES.get(request.path_info)
        if probe is not None and request.method in ("GET", "HEAD"):
            return probe(request)
        return self.get_response(request)

    def process_exception(self, request, exception):
        if is_database_unavailable(exception):
            return database_unavailable_response(exception)
        return None


class RequestLogContextMiddleware:
    """Every log line of a request carries its `request_id` (SPEC §15), and `app_id` once the App is known.

    The ID is the incoming `X-Request-ID` when well-formed (apps.core.log_context), else a new one; the
    response echoes it. Placed after ServiceHealthMiddleware and MetricsMiddleware: probes and scrapes get no
    ID and cost nothing more; every other answer (a 400 for an unknown host, a 413) carries one. `process_view` runs after
    AppHostMiddleware has set `request.app`.

    The context is not reset when this middleware returns: Django logs a 5xx response (`django.request`)
    after the whole middleware chain, and gunicorn writes the access line after that; both belong to the
    request. It ends with the response (`request_finished`, when the server closes it), and the next request
    on the thread starts its own anyway.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = log_context.request_id_from(request.META.get("HTTP_X_REQUEST_ID"))
        log_context.start({"request_id": request_id})
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        app = getattr(request, "app", None)
        if app is not None:
            log_context.bind(app_id=app.pk)


def end_request_log_context(**kwargs) -> None:
    """`request_finished` receiver (apps.core.apps): the request's log context ends with its response."""
    log_context.clear()


def max_multipart_bytes() -> int:
    # A multipart request holds at most MAX_FILES_PER_REQUEST files, plus room for its fields and envelope.
    return settings.MAX_UPLOAD_BYTES * settings.MAX_FILES_PER_REQUEST + settings.DATA_UPLOAD_MAX_MEMORY_SIZE


class RequestLimitsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response("bad_request", "Invalid Content-Length.", 400)
        multipart = (request.META.get("CONTENT_TYPE") or "").lower().startswith("multipart/")
        limit = max_multipart_bytes() if multipart else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length > limit:
            return error_response("payload_too_large", f"The request body is larger than {limit} bytes.", 413,
                                  {"body": [f"at most {limit} bytes"]})
        return self.get_response(request)
