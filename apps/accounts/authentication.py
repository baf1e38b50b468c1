"""Access-key Bearer authentication for App-host and management requests.

Three kinds of callers authenticate differently and look different in code: access keys (here),
connect tokens (apps.connect.authentication) and the system credential (apps.credentials.authentication).
"""

from __future__ import annotations

from rest_framework import authentication, exceptions, permissions

from .models import ACCESS_KEY_PREFIX, AccessKey
from .selectors import access_key_authenticate


class KeyPrincipal:
    """`request.user` for a request authenticated by an access key."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, key: AccessKey):
        self.key = key

    def __str__(self) -> str:
        return f"access_key:{self.key.preview}"


def bearer_token(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class AccessKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer dynamiq_acc_...`. A bearer that is not an access key is rejected (401)."""

    def authenticate(self, request):
        token = bearer_token(request)
        if token is None:
            return None
        if not token.startswith(ACCESS_KEY_PREFIX):
            raise exceptions.AuthenticationFailed("This endpoint accepts access keys only.")
        # The App-host routing statement may have read the key's row already (AppHostMiddleware).
        key = access_key_authenticate(raw_key=token, lookup=getattr(request, "access_key_lookup", None))
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked access key.")
        return KeyPrincipal(key), key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class HasAccessKey(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        if not isinstance(request.auth, AccessKey):
            raise exceptions.NotAuthenticated("An access key is required.")
        return True


class CanUseApp(permissions.BasePermission):
    """App-host requests need a key of the App's project or organization (another one: 403, SPEC.md
    section 5).

    Public Apps also answer without a key, but only the methods a view lists in `anonymous_methods`:
    what acts as no end user (invoke, runs without user_id, such runs by ID). Anything keyed by a
    caller-asserted user_id (runs as a user, their list, requirement status, connect tokens) still
    needs a key, or anyone could act as any end user of a public App.
    """

    message = "This access key cannot use this App."

    def has_permission(self, request, view) -> bool:
        app = getattr(request, "app", None)
        if app is None:
            return False
        key = request.auth if isinstance(request.auth, AccessKey) else None
        if key is None:
            if app.is_public and request.method in getattr(view, "anonymous_methods", ()):
                return True
            raise exceptions.NotAuthenticated("An access key is required.")
        return key.can_act_in(app.project)
