"""The platform host's 404 and 500 handlers: an HTML page for a browser on a browser route (the admin, the
hosted connect page), the JSON error envelope for everything else (apps.core.views).

A request gets HTML only when it asks for it (`Accept` names text/html, as browsers do) and is not on an
API path: the management and connect API (/v1/), the App API on the platform host (/apps/<id>/), the
internal API and the demo upstream. App hosts route through config/app_urls.py, whose handlers are the JSON
ones, so an API client never parses a web page, whatever it sends in `Accept`.
"""

from __future__ import annotations

from django.http import HttpResponse
from django.template import loader

from . import views

API_PREFIXES = ("/v1/", "/apps/", "/internal/", "/demo-upstream/")


def wants_html(request) -> bool:
    if getattr(request, "app", None) is not None or request.path.startswith(API_PREFIXES):
        return False
    return "text/html" in request.headers.get("Accept", "")


def _page(template: str, status: int, context: dict | None = None) -> HttpResponse:
    # No request context: a 500 page must render even when what failed is a context processor or the session.
    return HttpResponse(loader.get_template(template).render(context or {}), status=status)


def not_found(request, exception=None):
    if wants_html(request):
        return _page("errors/404.html", 404, {"path": request.path})
    return views.not_found(request, exception)


def server_error(request):
    response = views.server_error(request)
    if response.status_code == 500 and wants_html(request):
        return _page("errors/500.html", 500)
    return response
