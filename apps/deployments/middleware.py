"""Routes a request to the platform or to an App by its Host, and validates the host.

- Platform host (PLATFORM_URL's host and its aliases): the platform URLconf; `/apps/<app-id>/...`
  is the App API for machines without wildcard DNS (the prefix is stripped, so the App URLconf sees
  the same paths as on the App's own hostname).
- Any other host must be an App hostname (`<uuid>.<APPS_DOMAIN>` or custom); unknown hosts and IP
  literals get 400.

The internal credentials API and the admin exist only in the platform URLconf, so no App host or
`/apps/<id>/` path can reach them.
"""

from __future__ import annotations

import re

from django.conf import settings

from apps.accounts.authentication import bearer_token
from apps.accounts.selectors import KeyLookup, access_key_digest
from apps.core.errors import error_response

from .selectors import app_route
from .services import is_ip_literal

_APP_PREFIX = re.compile(r"^/apps/(?P<app_id>[0-9a-fA-F-]{36})(?P<rest>/.*)?$")


def _platform_hosts() -> set[str]:
    return {settings.PLATFORM_HOST.lower(), *(h.lower() for h in settings.PLATFORM_HOST_ALIASES)}


def _bare_host(request) -> str:
    host = request.META.get("HTTP_HOST") or request.META.get("SERVER_NAME", "")
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


class AppHostMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        host = _bare_host(request)
        request.app = None
        request.app_base_path = ""
        if host in _platform_hosts():
            match = _APP_PREFIX.match(request.path_info)
            if match:
                app = self._route(request, app_id=match["app_id"])
                if app is None:
                    return error_response("not_found", "No App with this ID.", 404)
                request.app_base_path = f"/apps/{app.id}"
                request.path_info = match["rest"] or "/"
            return self.get_response(request)
        # An IP literal never names an App, even if an older release stored one as a custom hostname.
        app = self._route(request, hostname=host) if host and not is_ip_literal(host) else None
        if app is None:
            return error_response("bad_request", "Unknown host.", 400)
        return self.get_response(request)

    @staticmethod
    def _route(request, **where):
        """Load the App and, in the same statement, the presented access key's row (handed to
        authentication as `request.access_key_lookup`, so an App-host request reads both in one round trip)."""
        token = bearer_token(request)
        digest = access_key_digest(token) if token else None
        app, key = app_route(key_digest=digest, **where)
        if app is not None:
            request.app = app
            request.urlconf = settings.APP_HOST_URLCONF
            if digest is not None:
                request.access_key_lookup = KeyLookup(digest, key)
        return app
