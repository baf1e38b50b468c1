"""OAuth2 flows over connections: start an authorization, exchange its code, store tokens, refresh, revoke.

Ties the client (oauth_client) and the state store (oauth_state) to Connection rows. End-user links are
not written here: apps.connect owns them and calls these steps (prepare, start, complete).
- The code exchange runs outside any transaction: the state is consumed first (locked, marked used),
  then the provider is called, then the tokens are stored with the connection row locked.
- Refresh is single-flight per connection: the row is locked and re-read inside the transaction, and
  only a token that is still near expiry is refreshed, so concurrent callers reuse the fresh one.
- Every token write goes through connections.services.connection_write_config (history row included).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from authlib.integrations.base_client.errors import OAuthError
from django.db import transaction
from django.urls import NoReverseMatch, reverse

from apps.core import metrics
from apps.core.actors import actor_label
from apps.core.errors import ApplicationError, BadRequest

from . import oauth_client, oauth_state
from .models import Connection, OAuthProvider, OAuthState
from .oauth_client import TOKEN_FIELDS, OAuthFlowError, ProviderFailure, near_expiry, token_set
from .services import connection_write_config

logger = logging.getLogger(__name__)


def provider_of(connection: Connection) -> OAuthProvider:
    provider = connection.provider
    if provider is None:
        provider_id = (connection.config or {}).get("provider_id")
        provider = OAuthProvider.objects.filter(project=connection.project_id, id=provider_id).first() if provider_id else None
    if provider is None:
        raise BadRequest("The connection has no OAuth2 provider.")
    return provider


def admin_return_path(connection: Connection) -> str:
    try:
        return reverse("admin:connections_connection_change", args=[connection.pk])
    except NoReverseMatch:
        return "/admin/"


def authorization_start(*, connection: Connection, provider: OAuthProvider, scopes: list[str], **state: Any) -> str:
    """Store a new single-use state for `connection` and return the provider URL that starts consent.

    `state`: the OAuthState bindings (app, user_id, requirement, connect_token_id, browser_binding, return_to).
    """
    new = oauth_state.state_create(connection=connection, **state)
    return oauth_client.authorization_url(
        provider=provider, scopes=scopes, state=new.state, code_verifier=new.code_verifier
    )


def start_project_authorization(*, connection: Connection, actor=None) -> str:
    """The provider URL that starts consent for a shared (project) OAuth2 connection."""
    if connection.type != "oauth2":
        raise BadRequest("Only OAuth2 connections are authorized with a provider.")
    if connection.app_id is not None:
        raise BadRequest("End-user connections are authorized through the connect flow.")
    provider = provider_of(connection)
    scopes = list((connection.config or {}).get("scopes") or provider.scopes or [])
    logger.info("oauth2 authorization started for connection %s by %s", connection.pk, actor_label(actor))
    return authorization_start(
        connection=connection, provider=provider, scopes=scopes, return_to=admin_return_path(connection)
    )


def consume_denied_state(*, state: str, browser_binding: str = "") -> OAuthState:
    """The provider redirected back with an error (e.g. the user declined): spend the state, change nothing."""
    return oauth_state.state_consume(state=state, browser_binding=browser_binding)


def authorization_code_exchange(*, record: OAuthState, code: str) -> dict[str, Any]:
    """Exchange the code of a consumed state with the provider (outside any transaction)."""
    if not code or len(code) > 2048:
        raise OAuthFlowError("The provider did not return an authorization code.", code="provider_error")
    connection = record.connection
    result = oauth_client.exchange_code(
        provider=provider_of(connection), code=code, code_verifier=record.code_verifier, redirect=record.redirect_uri
    )
    if isinstance(result, ProviderFailure):
        logger.warning("oauth2 code exchange failed for connection %s: %s", connection.pk, result.error)
        raise OAuthFlowError("The provider refused the authorization. Start again.", code="provider_error",
                             details={"provider_error": result.error})
    return result


def authorized_tokens_store(*, record: OAuthState, token: dict[str, Any], account: dict | None = None) -> Connection:
    """Inside the caller's transaction: lock the flow's connection, store the tokens (and the account the
    provider's userinfo named, SPEC §13), mark it active."""
    locked = Connection.objects.select_for_update().filter(pk=record.connection_id).first()
    if locked is None:
        raise OAuthFlowError("The connection was removed while authorizing.", code="invalid_state")
    actor = f"end_user:{record.user_id}" if record.user_id else "oauth2:consent"
    return tokens_store(connection=locked, tokens=token_set(token, previous=locked.config or {}), actor=actor,
                        also={"account": account})


def tokens_store(*, connection: Connection, tokens: dict[str, Any], actor: str, also: dict | None = None) -> Connection:
    """Write the token set into the (locked, freshly read) connection and mark it active."""
    config = {k: v for k, v in (connection.config or {}).items() if k not in TOKEN_FIELDS}
    config.update(tokens)
    expires_at = tokens.get("expires_at")
    return connection_write_config(
        connection=connection, config=config, actor=actor, status=Connection.Status.ACTIVE,
        expires_at=datetime.fromtimestamp(expires_at, tz=UTC) if isinstance(expires_at, int) else None, also=also,
    )


def _mark_expired(connection: Connection) -> None:
    connection.status = Connection.Status.EXPIRED
    connection.save(update_fields=["status", "updated_at"])


def _refresh_locked(connection: Connection) -> bool:
    """Refresh a locked connection's token. True if a new access token was stored."""
    config = connection.config or {}
    refresh_token = config.get("refresh_token")
    if not refresh_token:
        if isinstance(config.get("expires_at"), int) and config["expires_at"] <= time.time():
            _mark_expired(connection)
        return False
    try:
        provider = provider_of(connection)
    except ApplicationError:
        return False
    try:
        token = oauth_client.refresh(provider=provider, refresh_token=refresh_token)
    except OAuthError as exc:
        if exc.error == "invalid_grant":
            _mark_expired(connection)
            logger.info("oauth2 refresh token of connection %s rejected (invalid_grant): marked expired", connection.pk)
        else:
            logger.warning("oauth2 refresh failed for connection %s: %s", connection.pk, exc.error)
        metrics.oauth2_refresh(success=False)
        return False
    except Exception as exc:  # network, SSRF guard, malformed answer: leave the connection as it is
        logger.warning("oauth2 refresh failed for connection %s: %s", connection.pk, type(exc).__name__)
        metrics.oauth2_refresh(success=False)
        return False
    try:
        tokens = token_set(token, previous=config)
    except OAuthFlowError:
        logger.warning("oauth2 refresh for connection %s returned no access token", connection.pk)
        metrics.oauth2_refresh(success=False)
        return False
    tokens_store(connection=connection, tokens=tokens, actor="oauth2:refresh")
    metrics.oauth2_refresh(success=True)
    return True


def refresh_if_needed(*, connection_ids: list) -> None:
    """Refresh every active OAuth2 connection of the list whose token expires within 60 s (or has).

    Single-flight per connection: each refresh runs in a transaction that locks the row
    (`select_for_update` on PostgreSQL; on SQLite the IMMEDIATE write transaction serializes writers)
    and re-reads it there, so callers that waited find the fresh token and do not refresh again.
    One query to find candidates, then one transaction per connection that needs it.
    """
    if not connection_ids:
        return
    candidates = [
        c.pk
        for c in Connection.objects.filter(pk__in=list(connection_ids), type="oauth2", status=Connection.Status.ACTIVE)
        .only("id", "config")
        if near_expiry(c.config or {})
    ]
    for pk in candidates:
        with transaction.atomic():
            locked = Connection.objects.select_for_update().filter(pk=pk).first()
            if locked is None or locked.status != Connection.Status.ACTIVE:
                continue
            if not near_expiry(locked.config or {}):
                continue  # another caller refreshed it while we waited for the lock
            _refresh_locked(locked)


def force_refresh(*, connection_id) -> bool:
    """After a provider 401: one refresh attempt, whatever the stored expiry. True if a new token was stored."""
    with transaction.atomic():
        locked = Connection.objects.select_for_update().filter(pk=connection_id, type="oauth2").first()
        if locked is None or locked.status not in (Connection.Status.ACTIVE, Connection.Status.UNAUTHORIZED):
            return False
        return _refresh_locked(locked)


def revoke_token_set(*, provider: OAuthProvider, token: dict[str, Any]) -> bool | None:
    """Revoke a grant that is not stored (refused after the exchange): as `revoke_upstream`, from the answer."""
    if not provider.revoke_url:
        return None
    value, hint = token.get("refresh_token"), "refresh_token"
    if not value:
        value, hint = token.get("access_token"), "access_token"
    if not value:
        return None
    try:
        return oauth_client.revoke(provider=provider, token=str(value), hint=hint) == 200
    except Exception as exc:
        logger.warning("oauth2 revocation of a refused grant failed: %s", type(exc).__name__)
        return False


def revoke_upstream(*, connection: Connection) -> bool | None:
    """RFC 7009 revocation of the connection's grant. None when there is nothing to revoke or no revoke URL.

    The refresh token is revoked when there is one (servers then drop its access tokens too, RFC 7009 2.1),
    else the access token. True when the provider accepted, False on any error.
    """
    if connection.type != "oauth2":
        return None
    config = connection.config or {}
    try:
        provider = provider_of(connection)
    except ApplicationError:
        return None
    if not provider.revoke_url:
        return None
    if config.get("refresh_token"):
        token, hint = config["refresh_token"], "refresh_token"
    elif config.get("access_token"):
        token, hint = config["access_token"], "access_token"
    else:
        return None
    try:
        status = oauth_client.revoke(provider=provider, token=token, hint=hint)
    except Exception as exc:
        logger.warning("oauth2 revocation failed for connection %s: %s", connection.pk, type(exc).__name__)
        return False
    if status != 200:
        logger.warning("oauth2 revocation for connection %s answered HTTP %s", connection.pk, status)
        return False
    return True
