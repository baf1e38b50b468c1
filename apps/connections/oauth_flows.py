"""OAuth2 flows over connections: start an authorization, exchange its code, store tokens, refresh, revoke.

Ties the client (oauth_client) and the state store (oauth_state) to Connection rows. End-user links are
not written here: apps.connect owns them and calls these steps (prepare, start, complete).
- The code exchange runs outside any transaction: the state is consumed first (locked, marked used),
  then the provider is called, then the tokens are stored with the connection row locked.
- Refresh is single-flight per connection: the row is locked and re-read inside the transaction, and
  only a token that is still near expiry (or still due, for the refresh job) is refreshed, so concurrent
  callers reuse the fresh one. Runs, the 401 retry and the periodic job `connections.refresh_due` share
  `_refresh_locked`, which records the outcome: health, status, the next refresh, and the lifecycle event.
- Every token write goes through connections.services.connection_write_config (history row included).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from apps.core import metrics
from apps.core.actors import actor_label
from apps.core.errors import ApplicationError, BadRequest

from . import oauth_client, oauth_state, signals
from .models import Connection, OAuthProvider, OAuthState
from .oauth_client import TOKEN_FIELDS, OAuthFlowError, ProviderFailure, RefreshError, near_expiry, token_set
from .services import connection_write_config

logger = logging.getLogger(__name__)

# The refresh job: connections locked and refreshed one by one, IDs read this many at a time; a run of the job
# stops after the budget (well inside its 15-minute lease) and leaves the rest for the next period.
REFRESH_BATCH_SIZE = 100
REFRESH_JOB_BUDGET_SECONDS = 300.0


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


def refresh_schedule(*, tokens: dict[str, Any], now: datetime) -> datetime | None:
    """When the refresh job next renews this token set (SPEC §13): OAUTH_REFRESH_AHEAD_SECONDS before expiry,
    and at least every OAUTH_REFRESH_MAX_AGE_SECONDS (a refresh token left unused may lapse at the provider).
    None without a refresh token: nothing can be renewed (the job still marks it expired at expiry, see
    refresh_due). A token living less than twice the lead is renewed at half its life, not at once."""
    if not tokens.get("refresh_token"):
        return None
    latest = now + timedelta(seconds=settings.OAUTH_REFRESH_MAX_AGE_SECONDS)
    expires_at = tokens.get("expires_at")
    if not isinstance(expires_at, int):
        return latest
    expiry = datetime.fromtimestamp(expires_at, tz=UTC)
    lead = min(timedelta(seconds=settings.OAUTH_REFRESH_AHEAD_SECONDS), max(expiry - now, timedelta(0)) / 2)
    return min(expiry - lead, latest)


def tokens_store(*, connection: Connection, tokens: dict[str, Any], actor: str, also: dict | None = None) -> Connection:
    """Write the token set into the (locked, freshly read) connection and mark it active.

    New tokens also reset the upkeep: health ok, no failure count or reason, and the next proactive refresh.
    `also`: more non-secret columns for the same write (the account userinfo named).
    """
    config = {k: v for k, v in (connection.config or {}).items() if k not in TOKEN_FIELDS}
    config.update(tokens)
    expires_at = tokens.get("expires_at")
    now = timezone.now()
    return connection_write_config(
        connection=connection, config=config, actor=actor, status=Connection.Status.ACTIVE,
        expires_at=datetime.fromtimestamp(expires_at, tz=UTC) if isinstance(expires_at, int) else None,
        changes={"health": Connection.Health.OK, "refresh_failures": 0, "status_reason": "",
                 "last_refreshed_at": now, "next_refresh_at": refresh_schedule(tokens=tokens, now=now), **(also or {})},
    )


class RefreshOutcome(StrEnum):
    REFRESHED = "refreshed"
    SKIPPED = "skipped"  # nothing asked of the provider: fresh already, nothing to refresh with, backing off
    FAILED = "failed"  # transient: health degraded, retried after a backoff, status unchanged
    EXPIRED = "expired"  # invalid_grant (or past expiry without a refresh token)
    UNAUTHORIZED = "unauthorized"  # the provider refused the platform's client


def refresh_backoff(attempt: int) -> timedelta:
    """Delay before retrying after the `attempt`-th consecutive transient failure: doubling, capped."""
    base = float(settings.OAUTH_REFRESH_RETRY_BASE_SECONDS)
    return timedelta(seconds=min(base * 2 ** min(max(attempt - 1, 0), 32), float(settings.OAUTH_REFRESH_RETRY_MAX_SECONDS)))


def _backing_off(connection: Connection, now: datetime) -> bool:
    """A transient failure's backoff is running: neither runs nor the job ask the provider before it ends."""
    return (connection.health == Connection.Health.DEGRADED and connection.next_refresh_at is not None
            and connection.next_refresh_at > now)


def _set_status(connection: Connection, *, status: str, reason: str, event: str) -> bool:
    """Move the connection to a status the refresh cannot undo: one conditional UPDATE (from the status it was
    read with), and the event only when that UPDATE changed the row, so racing callers send it once."""
    changed = Connection.objects.filter(pk=connection.pk, status=connection.status).exclude(status=status).update(
        status=status, status_reason=reason, health=Connection.Health.OK, refresh_failures=0, next_refresh_at=None,
        updated_at=timezone.now(),
    )
    previous = connection.status
    connection.status, connection.status_reason = status, reason
    if changed:
        # `previous_status`: a link that had already stopped counting (unauthorized → expired) is not
        # announced unsatisfied a second time (apps.webhooks.events).
        signals.emit(event, connection_id=connection.pk, data={"previous_status": previous})
    return bool(changed)


def _mark_expired(connection: Connection, reason: str = "The access token expired and cannot be refreshed.") -> None:
    _set_status(connection, status=Connection.Status.EXPIRED, reason=reason, event=signals.CONNECTION_EXPIRED)


def _record_transient_failure(connection: Connection, reason: str) -> None:
    """Health degraded, one more failure, the next attempt after a backoff; the status stays. Compare-and-set
    on the failure count read under the lock: the attempt number in the event is the one stored."""
    attempt = connection.refresh_failures + 1
    now = timezone.now()
    changes = {"health": Connection.Health.DEGRADED, "refresh_failures": attempt,
               "status_reason": f"Token refresh failed ({reason}); attempt {attempt}, retrying with backoff.",
               "next_refresh_at": now + refresh_backoff(attempt)}
    changed = Connection.objects.filter(pk=connection.pk, refresh_failures=connection.refresh_failures).update(
        **changes, updated_at=now,
    )
    for name, value in changes.items():
        setattr(connection, name, value)
    if changed:
        signals.emit(signals.CONNECTION_REFRESH_FAILED, connection_id=connection.pk, data={"attempt": attempt})


def _refresh_locked(connection: Connection) -> RefreshOutcome:
    """Refresh a locked, freshly read connection's token and record the outcome (SPEC §13):
    success → new tokens, health ok (`connection.recovered` if it was degraded or not active);
    invalid_grant → `expired`; a refused client → `unauthorized`; anything else → health degraded and a
    retry after a backoff, status unchanged (`connection.refresh_failed` with the attempt number)."""
    config = connection.config or {}
    refresh_token = config.get("refresh_token")
    if not refresh_token:
        if isinstance(config.get("expires_at"), int) and config["expires_at"] <= time.time():
            _mark_expired(connection)
            return RefreshOutcome.EXPIRED
        return RefreshOutcome.SKIPPED
    try:
        provider = provider_of(connection)
    except ApplicationError:
        return RefreshOutcome.SKIPPED
    try:
        tokens = token_set(oauth_client.refresh(provider=provider, refresh_token=refresh_token), previous=config)
    except RefreshError as exc:
        metrics.oauth2_refresh(success=False)
        if exc.kind == RefreshError.INVALID_GRANT:
            logger.info("oauth2 refresh token of connection %s rejected (invalid_grant): marked expired", connection.pk)
            _mark_expired(connection, "The provider refused the refresh token (invalid_grant): connect the account again.")
            return RefreshOutcome.EXPIRED
        if exc.kind == RefreshError.UNAUTHORIZED:
            logger.warning("oauth2 refresh for connection %s: the provider refused the client (%s): marked unauthorized",
                           connection.pk, exc.reason)
            _set_status(connection, status=Connection.Status.UNAUTHORIZED,
                        reason=f"The provider refused the platform's client credentials ({exc.reason}).",
                        event=signals.CONNECTION_UNAUTHORIZED)
            return RefreshOutcome.UNAUTHORIZED
        logger.warning("oauth2 refresh failed for connection %s: %s", connection.pk, exc.reason)
        _record_transient_failure(connection, exc.reason)
        return RefreshOutcome.FAILED
    recovered = connection.health == Connection.Health.DEGRADED or connection.status != Connection.Status.ACTIVE
    tokens_store(connection=connection, tokens=tokens, actor="oauth2:refresh")
    metrics.oauth2_refresh(success=True)
    if recovered:
        signals.emit(signals.CONNECTION_RECOVERED, connection_id=connection.pk)
    return RefreshOutcome.REFRESHED


def refresh_if_needed(*, connection_ids: list) -> None:
    """Refresh every active OAuth2 connection of the list whose token expires within 60 s (or has).

    Single-flight per connection: each refresh runs in a transaction that locks the row
    (`select_for_update` on PostgreSQL; on SQLite the IMMEDIATE write transaction serializes writers)
    and re-reads it there, so callers that waited find the fresh token and do not refresh again.
    One query to find candidates, then one transaction per connection that needs it. A connection in a
    transient failure's backoff is not retried here: runs use the stored token until the backoff ends.
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
            if _backing_off(locked, timezone.now()):
                continue
            _refresh_locked(locked)


def force_refresh_outcome(*, connection_id) -> RefreshOutcome:
    """After a provider 401: one refresh attempt, whatever the stored expiry or backoff (the 401 is news)."""
    with transaction.atomic():
        locked = Connection.objects.select_for_update().filter(pk=connection_id, type="oauth2").first()
        if locked is None or locked.status not in (Connection.Status.ACTIVE, Connection.Status.UNAUTHORIZED):
            return RefreshOutcome.SKIPPED
        return _refresh_locked(locked)


def force_refresh(*, connection_id) -> bool:
    """After a provider 401: one refresh attempt, whatever the stored expiry. True if a new token was stored."""
    return force_refresh_outcome(connection_id=connection_id) == RefreshOutcome.REFRESHED


def _due(now: datetime) -> Q:
    """Due for the refresh job: its scheduled time has come, or (tokens stored before the schedule existed, and
    tokens without a refresh token) the expiry is within the lead, so a lapsed token is marked expired on time."""
    ahead = now + timedelta(seconds=settings.OAUTH_REFRESH_AHEAD_SECONDS)
    return Q(next_refresh_at__lte=now) | Q(next_refresh_at__isnull=True, expires_at__lte=ahead)


def _is_due(connection: Connection, now: datetime) -> bool:
    """_due() for a row read under the lock."""
    if connection.next_refresh_at is not None:
        return connection.next_refresh_at <= now
    ahead = now + timedelta(seconds=settings.OAUTH_REFRESH_AHEAD_SECONDS)
    return connection.expires_at is not None and connection.expires_at <= ahead


def refresh_due(*, batch_size: int = REFRESH_BATCH_SIZE, budget_seconds: float = REFRESH_JOB_BUDGET_SECONDS) -> dict[str, int]:
    """The periodic job `connections.refresh_due`: refresh every active OAuth2 connection that is due, in batches
    (one SELECT of IDs each), each through the run-time path's lock and re-read, so runs and other job runs
    racing it cause one token call. Stops after `budget_seconds` (a dead provider's timeouts add up); the rest
    is due again next period. Returns counts by outcome."""
    counts = dict.fromkeys(RefreshOutcome, 0)
    visited: set = set()
    started = time.monotonic()
    while time.monotonic() - started < budget_seconds:
        now = timezone.now()
        batch = [
            pk for pk in Connection.objects.filter(_due(now), type="oauth2", status=Connection.Status.ACTIVE)
            .order_by("next_refresh_at", "id").values_list("id", flat=True)[:batch_size + len(visited)]
            if pk not in visited
        ][:batch_size]
        if not batch:
            break
        for pk in batch:
            visited.add(pk)
            counts[_refresh_due_one(pk)] += 1
            if time.monotonic() - started >= budget_seconds:
                break
    return {str(outcome): n for outcome, n in counts.items()}


def _refresh_due_one(pk) -> RefreshOutcome:
    with transaction.atomic():
        locked = Connection.objects.select_for_update().filter(pk=pk, type="oauth2").first()
        if locked is None or locked.status != Connection.Status.ACTIVE:
            return RefreshOutcome.SKIPPED
        if not _is_due(locked, timezone.now()):
            return RefreshOutcome.SKIPPED  # a run (or another job run) refreshed it while we waited for the lock
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
