"""Connect tokens: short-lived JWTs (HS256) scoped to one App and one end user.

Signed with a key derived from SECRET_KEY for this purpose only, so a connect token can never be
confused with any other signed value of the platform, and audience `connect` so no other consumer
of a JWT would accept it. Accepted only by the connect API and the hosted connect page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import jwt
from django.conf import settings
from django.utils import timezone

from apps.core.errors import BadRequest, Unauthorized

AUDIENCE = "connect"
ALGORITHM = "HS256"
_PURPOSE = b"apps.connect.tokens/v1"
MAX_USER_ID_LENGTH = 255
MAX_TOKEN_LENGTH = 4096
MAX_JTI_LENGTH = 64  # UsedConnectToken.jti
MAX_EXPECTED_ACCOUNT_LENGTH = 255  # OAuthState.expected_account
# SPEC §12: 30 minutes by default, at most 24 hours (settings.py refuses a larger value at start).
DEFAULT_TTL_SECONDS = 30 * 60
MAX_TTL_SECONDS = 24 * 3600


class InvalidConnectToken(Unauthorized):
    """Malformed, badly signed, wrong audience or expired. `expired` tells the page which message to show."""

    def __init__(self, message: str, *, expired: bool = False):
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True)
class ConnectClaims:
    app_id: str
    user_id: str
    jti: str
    expires_at: datetime
    redirect_url: str = ""
    # SPEC §13 reconnect in place: the hosted page offers new credentials for requirements already linked.
    reconnect: bool = False
    # SPEC §13: the upstream account id the user must link (empty: any). A different account is refused.
    expected_account: str = ""

    @property
    def rate_limit_identity(self) -> str:
        """Whose counter a request with this token counts on (apps.core.ratelimit)."""
        return rate_limit_identity(self.jti)


def rate_limit_identity(jti: str) -> str:
    """A connect token's rate-limit identity: the connect API's and the hosted page's (the session keeps the jti)."""
    return f"token:{jti}"


def _key() -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), _PURPOSE, hashlib.sha256).digest()


def validate_user_id(user_id) -> str:
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= MAX_USER_ID_LENGTH or not user_id.strip():
        raise BadRequest("Invalid request.", details={"user_id": ["must be a string of 1 to 255 characters"]})
    return user_id


def mint(*, app_id: str, user_id: str, redirect_url: str = "", reconnect: bool = False,
         expected_account: str = "") -> tuple[str, ConnectClaims]:
    now = timezone.now().replace(microsecond=0)
    claims = ConnectClaims(
        app_id=str(app_id),
        user_id=validate_user_id(user_id),
        jti=secrets.token_urlsafe(16),
        # min(): a value changed at run time (not through settings.py) still cannot outlive the maximum.
        expires_at=now + timedelta(seconds=min(settings.CONNECT_TOKEN_TTL_SECONDS, MAX_TTL_SECONDS)),
        redirect_url=redirect_url or "",
        reconnect=bool(reconnect),
        expected_account=expected_account or "",
    )
    payload = {
        "aud": AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int(claims.expires_at.timestamp()),
        "jti": claims.jti,
        "app_id": claims.app_id,
        "user_id": claims.user_id,
    }
    if claims.redirect_url:
        payload["redirect_url"] = claims.redirect_url
    if claims.reconnect:
        payload["reconnect"] = True
    if claims.expected_account:
        payload["expected_account"] = claims.expected_account
    return jwt.encode(payload, _key(), algorithm=ALGORITHM), claims


def decode(token: str) -> ConnectClaims:
    """Verify signature, audience and expiry. Raises InvalidConnectToken (401) with a human message."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidConnectToken("This connect link is invalid.")
    try:
        payload = jwt.decode(
            token, _key(), algorithms=[ALGORITHM], audience=AUDIENCE,
            options={"require": ["exp", "aud", "jti", "app_id", "user_id"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidConnectToken("This connect link has expired.", expired=True) from exc
    except jwt.PyJWTError as exc:
        raise InvalidConnectToken("This connect link is invalid.") from exc
    user_id, app_id, jti = payload.get("user_id"), payload.get("app_id"), payload.get("jti")
    if (not all(isinstance(v, str) and v for v in (user_id, app_id, jti)) or len(user_id) > MAX_USER_ID_LENGTH
            or len(jti) > MAX_JTI_LENGTH):
        raise InvalidConnectToken("This connect link is invalid.")
    redirect_url = payload.get("redirect_url") or ""
    expected_account = payload.get("expected_account") or ""
    if not isinstance(expected_account, str) or len(expected_account) > MAX_EXPECTED_ACCOUNT_LENGTH:
        raise InvalidConnectToken("This connect link is invalid.")
    return ConnectClaims(
        app_id=app_id, user_id=user_id, jti=jti, redirect_url=redirect_url if isinstance(redirect_url, str) else "",
        expected_account=expected_account,
        expires_at=datetime.fromtimestamp(int(payload["exp"]), tz=UTC), reconnect=payload.get("reconnect") is True,
    )


def hosted_page_url(token: str) -> str:
    return settings.PLATFORM_URL.rstrip("/") + "/connect?" + urlencode({"token": token})
