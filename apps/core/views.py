import sys

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect

from .errors import database_unavailable_response, error_response, from_django_suspicious
from .health import readiness
from .outage import is_database_unavailable, retry_after


def home(request):
    return redirect("admin:index")


def healthz(request):
    """Liveness: no database, no cache (apps.core.health). Answered on any host, over plain HTTP."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Readiness: 200 with every check `ok`, else 503 naming the failing ones (apps.core.health)."""
    ready, checks = readiness()
    if ready:
        return JsonResponse({"status": "ok", "checks": checks})
    failing = sorted(name for name, value in checks.items() if value != "ok")
    response = JsonResponse({"status": "unavailable", "checks": checks, "failing": failing}, status=503)
    response["Retry-After"] = retry_after()
    response._has_been_logged = True  # a probe every few seconds: the body says it, not one log line each
    return response


def not_found(request, exception=None):
    return error_response("not_found", "Not found.", 404)


def bad_request(request, exception=None):
    """handler400: Django's SuspiciousOperation (e.g. a form over DATA_UPLOAD_MAX_MEMORY_SIZE) as the
    envelope, 413 for size."""
    mapped = from_django_suspicious(exception) if exception is not None else None
    if mapped is None:
        return error_response("bad_request", "Bad request.", 400)
    return error_response(mapped.code, mapped.message, mapped.status, mapped.details)


def server_error(request):
    # Called while Django handles the exception (sys.exc_info() is set): an error raised by a middleware
    # (host routing looks Apps up) lands here, not in a view's handler. A database outage is a 503.
    exc = sys.exc_info()[1]
    if is_database_unavailable(exc):
        return database_unavailable_response(exc)
    return error_response("internal_error", "Internal server error.", 500)


def robots(request):  # pragma: no cover - trivial
    return HttpResponse("User-agent: *\nDisallow: /\n", content_type="text/plain")


__all__ = ["home", "healthz", "readyz", "not_found", "bad_request", "server_error", "robots", "settings"]
