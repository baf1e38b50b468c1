from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect

from .errors import error_response, from_django_suspicious


def home(request):
    return redirect("admin:index")


def healthz(request):
    return JsonResponse({"status": "ok"})


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
    return error_response("internal_error", "Internal server error.", 500)


def robots(request):  # pragma: no cover - trivial
    return HttpResponse("User-agent: *\nDisallow: /\n", content_type="text/plain")


__all__ = ["home", "healthz", "not_found", "bad_request", "server_error", "robots", "settings"]
