"""Connect-token Bearer authentication: accepted only by the connect API (`/v1/connect/*`).

Access keys are refused here (401), and every other endpoint refuses connect tokens, because each
authentication class accepts only its own kind of bearer.
"""

from __future__ import annotations

from rest_framework import authentication, exceptions, permissions

from apps.accounts.authentication import bearer_token
from apps.accounts.models import ACCESS_KEY_PREFIX
from apps.core import log_context
from apps.deployments.selectors import app_by_id

from .selectors import connect_token_used_on_page
from .tokens import ConnectClaims, InvalidConnectToken, decode


class EndUserPrincipal:
    """`request.user` for a connect-token request: one end user of one App."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, *, app, claims: ConnectClaims):
        self.app = app
        self.user_id = claims.user_id
        self.claims = claims

    def __str__(self) -> str:
        return f"end_user:{self.user_id}"


class ConnectTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        token = bearer_token(request)
        if token is None:
            return None
        if token.startswith(ACCESS_KEY_PREFIX):
            raise exceptions.AuthenticationFailed("The connect API accepts connect tokens only, not access keys.")
        try:
            claims = decode(token)
        except InvalidConnectToken as exc:
            raise exceptions.AuthenticationFailed(exc.message)
        # A token exchanged on the hosted page is spent: its URL (history, logs, a forwarded mail) must not
        # keep working on the API for the rest of its lifetime, or single use of the page would be moot.
        if connect_token_used_on_page(jti=claims.jti):
            raise exceptions.AuthenticationFailed(
                "This connect token was used to open the hosted connect page; ask the application for a new one."
            )
        app = app_by_id(app_id=claims.app_id)
        if app is None:
            raise exceptions.AuthenticationFailed("This connect token's App no longer exists.")
        log_context.bind(app_id=app.pk, user_id=claims.user_id)
        return EndUserPrincipal(app=app, claims=claims), claims

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="connect"'


class HasConnectToken(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        if not isinstance(request.auth, ConnectClaims):
            raise exceptions.NotAuthenticated("A connect token is required.")
        return True
