"""MCP session tokens: short-lived JWTs (HS256) scoped to one App and one end user (SPEC §14).

The App owner's backend mints one (`POST /v1/mcp/sessions`, access key) and hands it to an agent, which sends
it as `Authorization: Bearer` to the App's `/mcp`. Signed with a key derived from SECRET_KEY for this purpose
only, with audience `mcp`: a connect token (another key, audience `connect`) is never an MCP token and an MCP
token is never a connect token, and the access-key authentication refuses any bearer that is not an access key,
so the token opens `/mcp` of its App and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from django.conf import settings
from django.utils import timezone

from apps.core.errors import BadRequest, Unauthorized

AUDIENCE = "mcp"
ALGORITHM = "HS256"
TOKEN_PREFIX = "mcp_"  # tells an MCP token from an access key at a glance (and in the authentication class)
_PURPOSE = b"apps.mcp.tokens/v1"
MAX_TTL_SECONDS = 3600  # SPEC §14: at most one hour
MAX_USER_ID_LENGTH = 255
MAX_TOKEN_LENGTH = 4096
MAX_JTI_LENGTH = 64


class InvalidMcpToken(Unauthorized):
    """Malformed, badly signed, of another App, wrong audience or expired: 401 with WWW-Authenticate."""


@dataclass(frozen=True)
class McpClaims:
    app_id: str
    user_id: str
    jti: str
    expires_at: datetime

    @property
    def rate_limit_identity(self) -> str:
        """Whose counter a request with this token counts on (apps.core.ratelimit): one MCP session."""
        return f"mcp:{self.jti}"


def _key() -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), _PURPOSE, hashlib.sha256).digest()


def ttl_seconds(requested) -> int:
    """The lifetime of a new token: the configured default, or less when asked; never over one hour."""
    default = min(settings.MCP_SESSION_TTL_SECONDS, MAX_TTL_SECONDS)
    if requested is None:
        return default
    if isinstance(requested, bool) or not isinstance(requested, int) or not 60 <= requested <= MAX_TTL_SECONDS:
        raise BadRequest("Invalid request.", details={"ttl_seconds": [f"must be an integer from 60 to {MAX_TTL_SECONDS}"]})
    return requested


def mint(*, app_id: str, user_id: str, ttl: int) -> tuple[str, McpClaims]:
    now = timezone.now().replace(microsecond=0)
    claims = McpClaims(
        app_id=str(app_id), user_id=user_id, jti=secrets.token_urlsafe(16),
        expires_at=now + timedelta(seconds=min(ttl, MAX_TTL_SECONDS)),
    )
    payload = {
        "aud": AUDIENCE, "iat": int(now.timestamp()), "exp": int(claims.expires_at.timestamp()),
        "jti": claims.jti, "app_id": claims.app_id, "user_id": claims.user_id,
    }
    return TOKEN_PREFIX + jwt.encode(payload, _key(), algorithm=ALGORITHM), claims


def decode(token: str, *, app_id: str) -> McpClaims:
    """Verify signature, audience, expiry and the App. Raises InvalidMcpToken (401)."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidMcpToken("Invalid MCP session token.")
    try:
        payload = jwt.decode(
            token[len(TOKEN_PREFIX):], _key(), algorithms=[ALGORITHM], audience=AUDIENCE,
            options={"require": ["exp", "aud", "jti", "app_id", "user_id"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidMcpToken("This MCP session token has expired: mint a new one (POST /v1/mcp/sessions).") from exc
    except jwt.PyJWTError as exc:
        raise InvalidMcpToken("Invalid MCP session token.") from exc
    user_id, token_app, jti = payload.get("user_id"), payload.get("app_id"), payload.get("jti")
    if (not all(isinstance(v, str) and v for v in (user_id, token_app, jti)) or len(user_id) > MAX_USER_ID_LENGTH
            or len(jti) > MAX_JTI_LENGTH):
        raise InvalidMcpToken("Invalid MCP session token.")
    if token_app != str(app_id):
        # Same message as any other bad token: a token says nothing about other Apps.
        raise InvalidMcpToken("Invalid MCP session token.")
    return McpClaims(app_id=token_app, user_id=user_id, jti=jti,
                     expires_at=datetime.fromtimestamp(int(payload["exp"]), tz=UTC))
