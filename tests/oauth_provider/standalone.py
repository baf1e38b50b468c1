"""The test OAuth2 provider (django-oauth-toolkit) as a process apart: its URLconf, a token-call log and a protected
resource. Settings: standalone_settings.py; the process: standalone_process.py.

Every POST to the token endpoint appends its HTTP status to PROVIDER_TOKEN_LOG (one line per call,
whichever worker answered), which is how a test counts token calls.
"""

from __future__ import annotations

import os

from django.http import JsonResponse
from django.urls import include, path

TOKEN_PATH = "/o/token/"


class TokenCallLog:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        log = os.environ.get("PROVIDER_TOKEN_LOG")
        if log and request.method == "POST" and request.path == TOKEN_PATH:
            with open(log, "a") as handle:
                handle.write(f"{response.status_code}\n")
        return response


def me(request):
    """A resource server: answers the token owner for a valid, unrevoked access token; 401 otherwise."""
    from oauth2_provider.oauth2_backends import get_oauthlib_core

    valid, oauth_request = get_oauthlib_core().verify_request(request, scopes=[])
    if not valid:
        return JsonResponse({"error": "invalid_token"}, status=401)
    return JsonResponse({"sub": oauth_request.user.username, "client_id": oauth_request.client.client_id})


urlpatterns = [
    path("me", me),
    path("o/", include("tests.oauth_provider.urls")),
]
