from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect

from .errors import error_response


def home(request):
    return redirect("admin:index")


def healthz(request):
    return JsonResponse({"status": "ok"})


def not_found(request, exception=None):
    return error_response("not_found", "Not found.", 404)


def server_error(request):
    return error_response("internal_error", "Internal server error.", 500)


def robots(request):  # pragma: no cover - trivial
    return HttpResponse("User-agent: *\nDisallow: /\n", content_type="text/plain")


__all__ = ["home", "healthz", "not_found", "server_error", "robots", "settings"]
