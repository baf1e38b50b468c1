"""OAuth2 client flows (authlib): authorization code + PKCE S256, token refresh, RFC 7009 revocation.

- `state` is random and single-use; only its SHA-256 digest is stored (OAuthState), beside the PKCE
  verifier (encrypted), the exact redirect URI, the connect token it was started with and, when the
  flow starts on the hosted connect page, a digest of a random value kept in that browser's session.
- The code exchange runs outside any transaction: the state is consumed first (locked, marked used),
  then the provider is called, then the tokens are stored. A replayed state never reaches the provider.
- Refresh is single-flight per connection: the row is locked and re-read inside the transaction, and
  only a token that is still near expiry is refreshed, so concurrent callers reuse the fresh one.
- Every outbound call goes through the SSRF-guarded transport (apps.engine.netguard), never follows
  redirects (a token request must not be replayed elsewhere), and nothing secret is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError

with warnings.catch_warnings():
    # authlib 1.9 prefers the `httpx2` package and warns when it falls back to httpx (pinned here).
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from apps.core.actors import actor_label
from apps.core.crypto import keyed_fingerprint
from apps.core.errors import ApplicationError, BadRequest, Conflict, NotFound
from apps.engine.netguard import BlockedAddressError, GuardedHTTPTransport, NoCookiesMixin

from .models import Connection, ConnectionConfigChange, OAuthProvider, OAuthState

logger = logging.getLogger(__name__)

CALLBACK_PATH = "/connect/oauth2/callback"
STATE_TTL = timedelta(minutes=10)
REFRESH_MARGIN_SECONDS = 60
HTTP_TIMEOUT_SECONDS = 15.0
TOKEN_FIELDS = ("access_token", "refresh_token", "expires_at", "scope", "token_type")


class OAuthFlowError(ApplicationError):
    """The authorization flow cannot complete (unknown, used or expired state; provider refusal)."""

    code, status = "oauth_error", 400


def redirect_uri() -> str:
    """The one redirect URI registered with every provider: exact, never built from the request."""
    return settings.PLATFORM_URL.rstrip("/") + CALLBACK_PATH


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def browser_binding_digest(value: str) -> str:
    """Digest of the random value a browser session holds; what OAuthState.browser_binding stores."""
    return _digest("browser-binding:" + value) if value else ""


class _OAuthClient(NoCookiesMixin, OAuth2Client):
    """authlib's client without a cookie jar: a provider's Set-Cookie is never sent back (SPEC 12)."""


def _client(provider: OAuthProvider) -> OAuth2Client:
    # client_secret_post: accepted by the common providers (and RFC 6749 2.3.1 allows it).
    return _OAuthClient(
        client_id=provider.client_id,
        client_secret=provider.client_secret or "",
        token_endpoint_auth_method="client_secret_post",
        revocation_endpoint_auth_method="client_secret_post",
        transport=GuardedHTTPTransport(allow_private=settings.ALLOW_PRIVATE_NETWORK_TARGETS),
        trust_env=False,
        follow_redirects=False,
        timeout=HTTP_TIMEOUT_SECONDS,
    )


def _authorization_url(*, provider: OAuthProvider, scopes: list[str], state: str, code_verifier: str) -> str:
    params: dict[str, Any] = {"redirect_uri": redirect_uri()}
    if scopes:
        params["scope"] = " ".join(scopes)
    if provider.pkce:
        params["code_challenge"] = create_s256_code_challenge(code_verifier)
        params["code_challenge_method"] = "S256"
    return prepare_grant_uri(provider.authorize_url, client_id=provider.client_id, response_type="code", state=state, **params)


def _new_state(
    *,
    connection: Connection,
    provider: OAuthProvider,
    scopes: list[str],
    app=None,
    user_id: str = "",
    requirement=None,
    connect_token_id: str = "",
    browser_binding: str = "",
    return_to: str = "",
) -> str:
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
        expires_at=timezone.now() + STATE_TTL,
    )
    return _authorization_url(provider=provider, scopes=scopes, state=state, code_verifier=code_verifier)


def _provider_of(connection: Connection) -> OAuthProvider:
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


def start_project_authorization(*, connection: Connection, actor=None) -> str:
    """The provider URL that starts consent for a shared (project) OAuth2 connection."""
    if connection.type != "oauth2":
        raise BadRequest("Only OAuth2 connections are authorized with a provider.")
    if connection.app_id is not None:
        raise BadRequest("End-user connections are authorized through the connect flow.")
    provider = _provider_of(connection)
    scopes = list((connection.config or {}).get("scopes") or provider.scopes or [])
    logger.info("oauth2 authorization started for connection %s by %s", connection.pk, actor_label(actor))
    return _new_state(connection=connection, provider=provider, scopes=scopes, return_to=admin_return_path(connection))


def _end_user_link_model():
    # The end-user link belongs to apps.connect (a layer above); the flow must create it in the same
    # transaction as the token write, so it is looked up here lazily rather than imported at module level.
    from apps.connect.models import EndUserLink

    return EndUserLink


@transaction.atomic
def start_end_user_authorization(
    *, app, user_id: str, requirement, connect_token_id: str, browser_binding: str = "", return_to: str = ""
) -> str:
    """Create (or reuse) the user's OAuth2 connection for `requirement` and return the provider URL.

    The link is created at once, pointing at an `incomplete` connection (pending until consent). A user
    re-authorizing keeps their current connection (and its tokens) until the new tokens arrive.
    """
    spec = requirement.spec or {}
    if spec.get("connection_type") != "oauth2":
        raise BadRequest("This requirement is not an OAuth2 connection.")
    provider = OAuthProvider.objects.filter(project=app.project_id, id=spec.get("provider_id")).first()
    if provider is None:
        raise NotFound("The OAuth2 provider of this requirement no longer exists.")
    EndUserLink = _end_user_link_model()
    link = (
        EndUserLink.objects.select_for_update().select_related("connection")
        .filter(app=app, user_id=user_id, requirement=requirement).first()
    )
    scopes = list(spec.get("scopes") or provider.scopes or [])
    # The builder fixes where the token may go (SPEC §12/§13): without it the connection could never be
    # used (origin_not_allowed at run time), so refuse before the user consents.
    url = ((spec.get("config") or {}).get("url") or "").strip()
    if not url:
        raise BadRequest(
            "This requirement fixes no API URL for its OAuth2 connections; the App's builder must add "
            "spec.config.url (recreate the requirement)."
        )
    if link is not None and link.connection.type == "oauth2":
        connection = link.connection
        fields = []
        if connection.provider_id != provider.id:
            connection.provider = provider
            fields.append("provider")
        if (connection.config or {}).get("url") != url:
            # Tokens are (re)issued by the flow this call starts; they may go only to the requirement's origin.
            connection.config = {**(connection.config or {}), "url": url}
            fields.append("config")
        if fields:
            connection.save(update_fields=[*fields, "updated_at"])
    else:
        if link is not None:  # a stale link of another type: replace its connection
            link.connection.delete()
        connection = Connection.objects.create(
            project_id=app.project_id, name=f"{user_id} · {requirement.name}"[:200], type="oauth2",
            config={"provider_id": str(provider.id), "url": url, "scopes": scopes}, status=Connection.Status.INCOMPLETE,
            app=app, user_id=user_id, provider=provider, created_by=f"end_user:{user_id}"[:200],
            updated_by=f"end_user:{user_id}"[:200],
        )
        try:
            with transaction.atomic():
                EndUserLink.objects.create(app=app, user_id=user_id, requirement=requirement, connection=connection)
        except IntegrityError as exc:
            raise Conflict("Another authorization for this requirement started at the same time; try again.") from exc
    return _new_state(
        connection=connection, provider=provider, scopes=scopes, app=app, user_id=user_id, requirement=requirement,
        connect_token_id=connect_token_id, browser_binding=browser_binding, return_to=return_to,
    )


def _consume_state(*, state: str, browser_binding: str) -> OAuthState:
    """Lock, check and mark the state used, in its own transaction. Any failure leaves it used too."""
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


def consume_denied_state(*, state: str, browser_binding: str = "") -> OAuthState:
    """The provider redirected back with an error (e.g. the user declined): spend the state, change nothing."""
    return _consume_state(state=state, browser_binding=browser_binding)


def _token_set(token: dict[str, Any], *, previous: dict[str, Any]) -> dict[str, Any]:
    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise OAuthFlowError("The provider answered without an access token.", code="provider_error")
    result: dict[str, Any] = {"access_token": access_token, "token_type": str(token.get("token_type") or "Bearer")}
    # A response without a new refresh token keeps the old one (RFC 6749 6: the server MAY issue one).
    refresh = token.get("refresh_token") or previous.get("refresh_token")
    if refresh:
        result["refresh_token"] = str(refresh)
    expires_at = token.get("expires_at")
    if not isinstance(expires_at, int) and isinstance(token.get("expires_in"), (int, float, str)):
        try:
            expires_at = int(time.time() + int(float(token["expires_in"])))
        except ValueError:
            expires_at = None
    if isinstance(expires_at, int):
        result["expires_at"] = expires_at
    scope = token.get("scope", previous.get("scope"))
    if isinstance(scope, list):
        scope = " ".join(scope)
    if scope:
        result["scope"] = str(scope)
    return result


def _store_tokens(*, connection: Connection, tokens: dict[str, Any], actor: str) -> Connection:
    """Write the token set into the (locked, freshly read) connection and mark it active."""
    before = connection.config or {}
    config = {k: v for k, v in before.items() if k not in TOKEN_FIELDS}
    config.update(tokens)
    connection.config = config
    connection.status = Connection.Status.ACTIVE
    expires_at = tokens.get("expires_at")
    connection.expires_at = (
        datetime.fromtimestamp(expires_at, tz=UTC) if isinstance(expires_at, int) else None
    )
    connection.updated_by = actor[:200]
    connection.save(update_fields=["config", "status", "expires_at", "updated_by", "updated_at"])
    changed = sorted(k for k in set(before) | set(config) if before.get(k) != config.get(k))
    ConnectionConfigChange.objects.create(
        connection=connection, actor=actor[:200], changed_fields=changed, fingerprint=keyed_fingerprint(config)
    )
    return connection


@dataclass
class _ProviderFailure:
    error: str


def _exchange_code(*, provider: OAuthProvider, code: str, code_verifier: str, redirect: str) -> dict | _ProviderFailure:
    kwargs: dict[str, Any] = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}
    if provider.pkce:
        kwargs["code_verifier"] = code_verifier
    try:
        with _client(provider) as client:
            return dict(client.fetch_token(provider.token_url, **kwargs))
    except OAuthError as exc:
        return _ProviderFailure(str(exc.error or "oauth_error"))
    except BlockedAddressError as exc:
        return _ProviderFailure(exc.code)  # the guard's one code: no hint whether the name resolved
    except Exception as exc:  # network errors, non-JSON answers: never echo their text
        return _ProviderFailure(type(exc).__name__)


def complete_authorization(*, state: str, code: str, browser_binding: str = "") -> OAuthState:
    """Finish the flow the provider redirected back with: the connection gets its tokens and turns active.

    Raises OAuthFlowError for an unknown, replayed or expired state, a browser mismatch or a provider
    refusal. The returned OAuthState says where to send the browser (`return_to`) and for whom it was.
    """
    record = _consume_state(state=state, browser_binding=browser_binding)
    if not code or len(code) > 2048:
        raise OAuthFlowError("The provider did not return an authorization code.", code="provider_error")
    connection = record.connection
    provider = _provider_of(connection)
    result = _exchange_code(
        provider=provider, code=code, code_verifier=record.code_verifier, redirect=record.redirect_uri
    )
    if isinstance(result, _ProviderFailure):
        logger.warning("oauth2 code exchange failed for connection %s: %s", connection.pk, result.error)
        raise OAuthFlowError("The provider refused the authorization. Start again.", code="provider_error",
                             details={"provider_error": result.error})
    actor = f"end_user:{record.user_id}" if record.user_id else "oauth2:consent"
    with transaction.atomic():
        locked = Connection.objects.select_for_update().filter(pk=connection.pk).first()
        if locked is None:
            raise OAuthFlowError("The connection was removed while authorizing.", code="invalid_state")
        tokens = _token_set(result, previous=locked.config or {})
        _store_tokens(connection=locked, tokens=tokens, actor=actor)
        if record.app_id and record.requirement_id:
            EndUserLink = _end_user_link_model()
            link = EndUserLink.objects.filter(
                app=record.app_id, user_id=record.user_id, requirement=record.requirement_id
            ).first()
            if link is None:
                EndUserLink.objects.create(
                    app_id=record.app_id, user_id=record.user_id, requirement_id=record.requirement_id, connection=locked
                )
            elif link.connection_id != locked.pk:
                old = link.connection
                link.connection = locked
                link.save(update_fields=["connection", "updated_at"])
                old.delete()
    record.connection = locked
    return record


def near_expiry(config: dict[str, Any], now: float) -> bool:
    """The stored token expires within REFRESH_MARGIN_SECONDS (or has expired)."""
    expires_at = config.get("expires_at")
    return isinstance(expires_at, int) and expires_at - now <= REFRESH_MARGIN_SECONDS


def _refresh_locked(connection: Connection) -> bool:
    """Refresh a locked connection's token. True if a new access token was stored."""
    config = connection.config or {}
    refresh_token = config.get("refresh_token")
    if not refresh_token:
        if isinstance(config.get("expires_at"), int) and config["expires_at"] <= time.time():
            connection.status = Connection.Status.EXPIRED
            connection.save(update_fields=["status", "updated_at"])
        return False
    try:
        provider = _provider_of(connection)
    except ApplicationError:
        return False
    try:
        with _client(provider) as client:
            token = dict(client.refresh_token(provider.token_url, refresh_token=refresh_token))
    except OAuthError as exc:
        if exc.error == "invalid_grant":
            connection.status = Connection.Status.EXPIRED
            connection.save(update_fields=["status", "updated_at"])
            logger.info("oauth2 refresh token of connection %s rejected (invalid_grant): marked expired", connection.pk)
        else:
            logger.warning("oauth2 refresh failed for connection %s: %s", connection.pk, exc.error)
        return False
    except Exception as exc:  # network, SSRF guard, malformed answer: leave the connection as it is
        logger.warning("oauth2 refresh failed for connection %s: %s", connection.pk, type(exc).__name__)
        return False
    try:
        tokens = _token_set(token, previous=config)
    except OAuthFlowError:
        logger.warning("oauth2 refresh for connection %s returned no access token", connection.pk)
        return False
    _store_tokens(connection=connection, tokens=tokens, actor="oauth2:refresh")
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
    now = time.time()
    candidates = [
        c.pk
        for c in Connection.objects.filter(pk__in=list(connection_ids), type="oauth2", status=Connection.Status.ACTIVE)
        .only("id", "config")
        if near_expiry(c.config or {}, now)
    ]
    for pk in candidates:
        with transaction.atomic():
            locked = Connection.objects.select_for_update().filter(pk=pk).first()
            if locked is None or locked.status != Connection.Status.ACTIVE:
                continue
            if not near_expiry(locked.config or {}, time.time()):
                continue  # another caller refreshed it while we waited for the lock
            _refresh_locked(locked)


def force_refresh(*, connection_id) -> bool:
    """After a provider 401: one refresh attempt, whatever the stored expiry. True if a new token was stored."""
    with transaction.atomic():
        locked = Connection.objects.select_for_update().filter(pk=connection_id, type="oauth2").first()
        if locked is None or locked.status not in (Connection.Status.ACTIVE, Connection.Status.UNAUTHORIZED):
            return False
        return _refresh_locked(locked)


def revoke_upstream(*, connection: Connection) -> bool | None:
    """RFC 7009 revocation of the connection's grant. None when there is nothing to revoke or no revoke URL.

    The refresh token is revoked when there is one (servers then drop its access tokens too, RFC 7009 2.1),
    else the access token. True when the provider accepted, False on any error.
    """
    if connection.type != "oauth2":
        return None
    config = connection.config or {}
    try:
        provider = _provider_of(connection)
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
        with _client(provider) as client:
            response = client.revoke_token(provider.revoke_url, token=token, token_type_hint=hint)
    except Exception as exc:
        logger.warning("oauth2 revocation failed for connection %s: %s", connection.pk, type(exc).__name__)
        return False
    if response.status_code != 200:
        logger.warning("oauth2 revocation for connection %s answered HTTP %s", connection.pk, response.status_code)
        return False
    return True


def new_browser_secret() -> str:
    return secrets.token_urlsafe(32)
