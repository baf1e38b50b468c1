"""Stream tokens: `?token=` on a run's SSE URL, so a browser EventSource (which cannot send an Authorization
header) can follow one run (SPEC.md section 12, "Stream URLs").

A short-lived JWT (STREAM_TOKEN_TTL_SECONDS, 10 minutes by default) naming one App and one run, signed with
a key derived from SECRET_KEY for this purpose only and audience `run-stream`, so it is never confused
with a connect token or any other signed value. Read-only by construction: only `RunStreamApi` lists
`StreamTokenAuthentication`, so the same token opens no other endpoint (not even `GET /v1/runs/{id}`).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

import jwt
from django.conf import settings
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from apps.accounts.authentication import CanUseApp

AUDIENCE = "run-stream"
ALGORITHM = "HS256"
_PURPOSE = b"apps.runs.stream_tokens/v1"
MAX_TOKEN_LENGTH = 2048


def _key() -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), _PURPOSE, hashlib.sha256).digest()


def mint(*, app_id, run_id, now: datetime | None = None) -> str:
    expires = (now or timezone.now()) + timedelta(seconds=settings.STREAM_TOKEN_TTL_SECONDS)
    claims = {"aud": AUDIENCE, "app": str(app_id), "run": str(run_id), "exp": int(expires.timestamp())}
    return jwt.encode(claims, _key(), algorithm=ALGORITHM)


def stream_url(request, *, run) -> str:
    """The run's SSE URL on the host and prefix this request came in on, with a token for that run."""
    query = urlencode({"token": mint(app_id=run.app_id, run_id=run.id)})
    return request.build_absolute_uri(f"{getattr(request, 'app_base_path', '')}/v1/runs/{run.id}/stream?{query}")


@dataclass(frozen=True)
class StreamGrant:
    """`request.auth` of a request authenticated by a stream token: read one run's stream, nothing else."""

    app_id: str
    run_id: str


class StreamPrincipal:
    is_authenticated = True
    is_anonymous = False

    def __str__(self) -> str:
        return "stream_token"


class StreamTokenAuthentication(authentication.BaseAuthentication):
    """`?token=` of a stream URL. Without one, the next authentication class (access keys) decides. A token
    that is malformed, tampered with, expired, or for another run or App is a 401."""

    def authenticate(self, request):
        token = request.query_params.get("token")
        if token is None:
            return None
        run_id = str((request.parser_context or {}).get("kwargs", {}).get("run_id", ""))
        app = getattr(request._request, "app", None)
        if not token or len(token) > MAX_TOKEN_LENGTH or app is None:
            raise exceptions.AuthenticationFailed("Invalid stream token.")
        try:
            claims = jwt.decode(token, _key(), algorithms=[ALGORITHM], audience=AUDIENCE,
                                options={"require": ["exp", "aud", "app", "run"]})
        except jwt.ExpiredSignatureError:
            raise exceptions.AuthenticationFailed("The stream token has expired.")
        except jwt.PyJWTError:
            raise exceptions.AuthenticationFailed("Invalid stream token.")
        if claims["app"] != str(app.id) or claims["run"] != run_id:
            raise exceptions.AuthenticationFailed("Invalid stream token.")
        return StreamPrincipal(), StreamGrant(app_id=claims["app"], run_id=claims["run"])

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class CanUseAppOrStreamGrant(permissions.BasePermission):
    """`RunStreamApi` only: a verified stream token (for this App and run) or the usual App-host rules."""

    def has_permission(self, request, view) -> bool:
        if isinstance(request.auth, StreamGrant):
            return True
        return CanUseApp().has_permission(request, view)
