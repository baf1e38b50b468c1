"""The system credential (CREDENTIALS_API_TOKEN) for the internal credentials API.

Only `Authorization: Bearer <system token>` counts, compared in constant time. Headers that claim a
request is internal (X-Internal, X-Forwarded-For, ...) are never read.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from rest_framework import authentication, exceptions, permissions

from apps.accounts.authentication import bearer_token


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class SystemPrincipal:
    is_authenticated = True
    is_anonymous = False

    def __str__(self) -> str:
        return "system"


class SystemCredentialAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        token = bearer_token(request)
        if token is None:
            return None
        if not hmac.compare_digest(token.encode(), settings.CREDENTIALS_API_TOKEN.encode()):
            raise exceptions.AuthenticationFailed("Invalid system credential.")
        if settings.CREDENTIALS_API_TOKEN_IS_DEVELOPMENT and not _is_loopback(request.META.get("REMOTE_ADDR", "")):
            # The development token is published in the source: off this machine it proves nothing.
            refused = exceptions.AuthenticationFailed("The development system credential is accepted from loopback only.")
            refused.refusal_reason = "development system credential off loopback"
            raise refused
        return SystemPrincipal(), "system"

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="internal"'


class IsSystem(permissions.BasePermission):
    message = "The system credential is required."

    def has_permission(self, request, view) -> bool:
        # False (not an exception) so the view's permission_denied runs: it counts and logs the refusal.
        return request.auth == "system"
