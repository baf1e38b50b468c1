"""`/metrics` and the HTTP request counter (SPEC §15), in one middleware, second in MIDDLEWARE.

Who may read `/metrics`:
- with METRICS_TOKEN set: a request carrying `Authorization: Bearer <METRICS_TOKEN>` (else 401);
- without it: loopback clients only, and only requests that no proxy forwarded (a reverse proxy on the same
  machine connects from loopback too: a request carrying `X-Forwarded-For`, `Forwarded` or `X-Real-IP` is
  refused, 403).
Where: the platform host (and its aliases) or an IP-literal Host (Prometheus scrapes `http://<ip>:<port>`;
an IP literal never names an App). An App's hostname, and `/apps/<id>/metrics`, fall through to the App
URLconf, which has no such route: 404. Answered before SecurityMiddleware, so a plain-HTTP scrape is not
redirected to HTTPS, and before host routing, so it reads no database (it works during an outage too).

Counting: every other request is counted once its response is built, by the URL pattern that matched
(`request.resolver_match.route`; `app:` in front for the App URLconf), `(unmatched)` when none did (404s,
unknown hosts, bodies refused at the door). The probes answered by ServiceHealthMiddleware (first) and
`/metrics` itself are not counted: the prober and Prometheus keep their own numbers.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpResponse

from . import metrics
from .errors import error_response

_FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def _host(request) -> str:
    host = (request.META.get("HTTP_HOST") or request.META.get("SERVER_NAME", "")).strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _serves_metrics(host: str) -> bool:
    aliases = (alias.lower() for alias in settings.PLATFORM_HOST_ALIASES)
    return host == settings.PLATFORM_HOST.lower() or host in aliases or _is_ip(host)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def metrics_view(request) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = error_response("method_not_allowed", f'Method "{request.method}" not allowed.', 405)
        response["Allow"] = "GET, HEAD"
        return response
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
            response = error_response("unauthorized", "Send `Authorization: Bearer <METRICS_TOKEN>`.", 401)
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    elif not _is_loopback(request.META.get("REMOTE_ADDR", "")) or any(h in request.META for h in _FORWARDED):
        return error_response("forbidden", "Without METRICS_TOKEN, metrics are served to loopback clients only.", 403)
    body, content_type = metrics.exposition()
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


class MetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.app_urlconf = settings.APP_HOST_URLCONF

    def __call__(self, request):
        if request.path_info == "/metrics" and _serves_metrics(_host(request)):
            return metrics_view(request)
        response = self.get_response(request)
        match = request.resolver_match
        if match is None:
            route = metrics.UNMATCHED_ROUTE
        elif getattr(request, "urlconf", None) == self.app_urlconf:
            route = "app:/" + match.route
        else:
            route = "/" + match.route
        metrics.http_request(route=route, status=response.status_code)
        return response
