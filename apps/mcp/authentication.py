"""Who calls an App's `/mcp` (SPEC §14): an MCP session token (an end user of this App), an access key of the
App's project or organization (no end user), or nobody on a public App (no end user).

A fourth kind of caller, so a class of its own (house style: auth that differs, looks different). It is used
by the MCP endpoint only: an MCP token presented anywhere else meets AccessKeyAuthentication, which refuses any
bearer that is not an access key.
"""

from __future__ import annotations

from rest_framework import authentication, exceptions, permissions

from apps.accounts.authentication import AccessKeyAuthentication, bearer_token
from apps.accounts.models import ACCESS_KEY_PREFIX, AccessKey
from apps.core import log_context

from .tokens import InvalidMcpToken, McpClaims, decode

WWW_AUTHENTICATE = 'Bearer realm="mcp"'


class McpUser:
    """`request.user` for a request with an MCP session token."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, claims: McpClaims):
        self.claims = claims

    def __str__(self) -> str:
        return "mcp_session"


class McpAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        token = bearer_token(request)
        if token is None:
            return None
        if token.startswith(ACCESS_KEY_PREFIX):
            return AccessKeyAuthentication().authenticate(request)
        app = getattr(request, "app", None)
        if app is None:
            raise exceptions.AuthenticationFailed("Invalid MCP session token.")
        try:
            claims = decode(token, app_id=str(app.id))
        except InvalidMcpToken as exc:
            raise exceptions.AuthenticationFailed(exc.message)
        log_context.bind(user_id=claims.user_id)
        return McpUser(claims), claims

    def authenticate_header(self, request) -> str:
        return WWW_AUTHENTICATE


class CanUseMcp(permissions.BasePermission):
    """An MCP token of this App (checked when decoded), an access key that may use the App (another project's:
    403, as everywhere on App hosts), or no credential on a public App."""

    message = "This access key cannot use this App."

    def has_permission(self, request, view) -> bool:
        app = getattr(request, "app", None)
        if app is None:
            return False
        if isinstance(request.auth, McpClaims):
            return True
        if isinstance(request.auth, AccessKey):
            return request.auth.can_act_in(app.project)
        if app.is_public:
            return True
        raise exceptions.NotAuthenticated("An MCP session token or an access key is required.")


def end_user_of(request) -> str:
    """The end user the request acts as: the token's user_id, or "" (access key, anonymous)."""
    return request.auth.user_id if isinstance(request.auth, McpClaims) else ""
