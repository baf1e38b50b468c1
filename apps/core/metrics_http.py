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

A Celery worker executes runs in its pool processes, which no web process can read: with WORKER_METRICS_BIND
it serves its own `/metrics` under the same rule (`serve_worker_metrics`, started by config/celery.py).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import threading
from http import HTTPStatus
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from prometheus_client.exposition import ThreadingWSGIServer

from . import metrics
from .errors import error_body, error_response

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


def refusal(*, authorization: str, remote_addr: str, forwarded: bool) -> tuple[int, str, str] | None:
    """Why this scrape is refused, as (status, code, message), or None: the one rule for the web tier's
    `/metrics` and a Celery worker's."""
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
            return 401, "unauthorized", "Send `Authorization: Bearer <METRICS_TOKEN>`."
    elif forwarded or not _is_loopback(remote_addr):
        return 403, "forbidden", "Without METRICS_TOKEN, metrics are served to loopback clients only."
    return None


def metrics_view(request) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = error_response("method_not_allowed", f'Method "{request.method}" not allowed.', 405)
        response["Allow"] = "GET, HEAD"
        return response
    refused = refusal(authorization=request.META.get("HTTP_AUTHORIZATION", ""),
                      remote_addr=request.META.get("REMOTE_ADDR", ""),
                      forwarded=any(h in request.META for h in _FORWARDED))
    if refused is not None:
        response = error_response(refused[1], refused[2], refused[0])
        if refused[0] == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
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


# ---- a Celery worker's own /metrics --------------------------------------------------------------------

def _worker_metrics_app(environ, start_response):
    """WSGI: `/metrics` of a Celery worker, under the same rule as the web tier's."""
    if environ.get("PATH_INFO") != "/metrics":
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [json.dumps(error_body("not_found", "Not found.")).encode()]
    if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        start_response("405 Method Not Allowed", [("Content-Type", "application/json"), ("Allow", "GET, HEAD")])
        return [json.dumps(error_body("method_not_allowed", "GET or HEAD only.")).encode()]
    refused = refusal(authorization=environ.get("HTTP_AUTHORIZATION", ""), remote_addr=environ.get("REMOTE_ADDR", ""),
                      forwarded=any(h in environ for h in _FORWARDED))
    if refused is not None:
        status, code, message = refused
        headers = [("Content-Type", "application/json")]
        if status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="metrics"'))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [json.dumps(error_body(code, message)).encode()]
    body, content_type = metrics.exposition()
    start_response("200 OK", [("Content-Type", content_type), ("Cache-Control", "no-store")])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # a scrape every few seconds is not worth a log line
        pass


def serve_worker_metrics(bind: str) -> WSGIServer:
    """Serve `/metrics` from a thread of a Celery worker's main process, at `host:port`.

    The tasks run in the pool's child processes, so the samples are read from PROMETHEUS_MULTIPROC_DIR, which
    must be set before the worker starts (prometheus_client reads it when first imported, which is before any
    worker signal) and be the worker's own: emptied here, never the web tier's directory."""
    if not metrics.MULTIPROCESS_DIR:
        raise ImproperlyConfigured("WORKER_METRICS_BIND needs PROMETHEUS_MULTIPROC_DIR (the worker's own directory) "
                                   "in the worker's environment")
    directory = Path(metrics.MULTIPROCESS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    host, _, port = bind.rpartition(":")
    server = make_server(host or "0.0.0.0", int(port), _worker_metrics_app,  # noqa: S104 - the operator's choice
                         server_class=ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server
