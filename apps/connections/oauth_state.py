"""The OAuth2 state store: one OAuthState row per started authorization, single-use.

`state` is random and only its SHA-256 digest is stored, beside the PKCE verifier (encrypted), the exact
redirect URI, the connect token the flow was started with and, when the flow starts on the hosted connect
page, a digest of a random value kept in that browser's session (the browser binding).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from authlib.common.security import generate_token
from django.db import transaction
from django.utils import timezone

from .models import Connection, OAuthState
from .oauth_client import OAuthFlowError, redirect_uri

STATE_TTL = timedelta(minutes=10)


@dataclass(frozen=True)
class NewState:
    """What the authorization URL carries: the state itself and the PKCE verifier it was stored with."""

    state: str
    code_verifier: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def browser_binding_digest(value: str) -> str:
    """Digest of the random value a browser session holds; what OAuthState.browser_binding stores."""
    return _digest("browser-binding:" + value) if value else ""


def new_browser_secret() -> str:
    return secrets.token_urlsafe(32)


def state_create(
    *,
    connection: Connection,
    app=None,
    user_id: str = "",
    requirement=None,
    connect_token_id: str = "",
    browser_binding: str = "",
    return_to: str = "",
    expected_account: str = "",
) -> NewState:
    state = generate_token(48)
    code_verifier = generate_token(64)  # 64 chars of [A-Za-z0-9]: within RFC 7636's 43..128
    OAuthState.objects.create(
        connection=connection,
        state_digest=_digest(state),
        code_verifier=code_verifier,
        redirect_uri=redirect_uri(),
        app=app,
        user_id=user_id,
        requirement=requirement,
        connect_token_id=connect_token_id,
        browser_binding=browser_binding,
        return_to=return_to,
        expected_account=expected_account,
        expires_at=timezone.now() + STATE_TTL,
    )
    return NewState(state=state, code_verifier=code_verifier)


def state_consume(*, state: str, browser_binding: str) -> OAuthState:
    """Lock, check and mark the state used, in its own transaction. Any failure leaves it used too.

    Consumed before the provider is called, so a replayed state never reaches the provider.
    """
    if not state or len(state) > 512:
        raise OAuthFlowError("This authorization link is invalid.", code="invalid_state")
    with transaction.atomic():
        record = (
            OAuthState.objects.select_for_update(of=("self",))
            .select_related("connection", "connection__provider", "app", "requirement")
            .filter(state_digest=_digest(state)).first()
        )
        if record is None:
            raise OAuthFlowError("This authorization link is unknown.", code="invalid_state")
        if record.used_at is not None:
            raise OAuthFlowError("This authorization link was already used.", code="state_used")
        record.used_at = timezone.now()
        record.save(update_fields=["used_at", "updated_at"])
    if record.expires_at <= record.used_at:
        raise OAuthFlowError("This authorization link has expired. Start again.", code="state_expired")
    if record.browser_binding and not hmac.compare_digest(record.browser_binding, browser_binding or ""):
        raise OAuthFlowError(
            "This authorization was started in another browser session. Start again from the connect page.",
            code="browser_mismatch",
        )
    return record
