from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.connections import oauth
from apps.connections.models import Connection, ConnectionConfigChange
from apps.core.crypto import keyed_fingerprint
from apps.core.errors import BadRequest, NotFound
from apps.deployments.models import App
from apps.engine import connection_types, origins
from apps.engine.connection_types import ConfigError
from apps.workflows.models import Requirement

from . import tokens
from .models import EndUserLink, UsedConnectToken
from .selectors import end_user_link


def redirect_url_allowed(*, app: App, redirect_url: str) -> bool:
    """Origin comparison (scheme, host, port; default ports normalized) against the App's allowed origins."""
    origin = origins.browser_origin(redirect_url)
    if origin is None:
        return False
    return any(origins.browser_origin(allowed) == origin for allowed in app.allowed_redirect_origins or [])


def connect_token_create(*, app: App, user_id: str, redirect_url: str | None = None) -> tuple[str, str, datetime]:
    """Mint a connect token for one end user of `app`. Returns (token, hosted page URL, expires_at)."""
    tokens.validate_user_id(user_id)
    if redirect_url is not None and redirect_url != "":
        if not isinstance(redirect_url, str) or len(redirect_url) > 2000 or not redirect_url_allowed(
            app=app, redirect_url=redirect_url
        ):
            raise BadRequest(
                "Invalid request.",
                details={"redirect_url": ["must be an http(s) URL on one of the App's allowed redirect origins"]},
            )
    token, claims = tokens.mint(app_id=str(app.id), user_id=user_id, redirect_url=redirect_url or "")
    return token, tokens.hosted_page_url(token), claims.expires_at


def connect_token_claim_for_page(*, claims: tokens.ConnectClaims) -> bool:
    """Record that a browser exchanged this token on the hosted page (SPEC §12: the exchange is single-use).

    True for the first exchange, False when the token was exchanged before. One INSERT on the unique
    `jti` decides it, so two browsers racing in two processes cannot both win (SQLite and PostgreSQL
    alike). Rows of expired tokens are purged on the way: a used token that expired is refused by its
    `exp` anyway, so the table only ever holds tokens still within their lifetime.
    """
    UsedConnectToken.objects.filter(expires_at__lte=timezone.now()).delete()
    try:
        with transaction.atomic():  # a savepoint: a lost race must not break the caller's transaction
            UsedConnectToken.objects.create(jti=claims.jti, expires_at=claims.expires_at)
    except IntegrityError:
        return False
    return True


def _end_user_actor(user_id: str) -> str:
    return f"end_user:{user_id}"[:200]


def end_user_connection_save(
    *, app: App, user_id: str, requirement: Requirement, config: Any, type: str | None = None
) -> EndUserLink:
    """Store the end user's credentials for `requirement` as an **active** connection and link it.

    A user who already linked one keeps its connection ID; only the config is replaced (and recorded
    in the config history as who/when/which fields, never a value). OAuth2 requirements are refused:
    their tokens come from the authorization flow.
    """
    ctype = connection_types.canonical_type(requirement.connection_type)
    if type is not None:
        try:
            given = connection_types.canonical_type(type) if isinstance(type, str) else None
        except ConfigError:
            given = None
        if given != ctype:
            raise BadRequest("Invalid request.", details={"type": [f"must be '{ctype}', the requirement's connection type"]})
    if connection_types.get_type(ctype).oauth:
        raise BadRequest(
            "OAuth2 requirements are linked through the authorization flow, not with credentials.",
            details={"type": ["oauth2 connections are authorized with the provider"]},
        )
    try:
        normalized = connection_types.validate_config(ctype, config)
    except ConfigError as exc:
        raise BadRequest("Invalid connection config.", details={"config": exc.errors}) from exc
    actor = _end_user_actor(user_id)
    for attempt in range(2):
        try:
            with transaction.atomic():
                return _save_locked(app=app, user_id=user_id, requirement=requirement, ctype=ctype,
                                    config=normalized, actor=actor)
        except IntegrityError:
            if attempt:  # two first links at once: the second one updates the first's connection
                raise
    raise AssertionError("unreachable")


def _save_locked(*, app: App, user_id: str, requirement: Requirement, ctype: str, config: dict, actor: str) -> EndUserLink:
    link = (
        EndUserLink.objects.select_for_update().select_related("connection")
        .filter(app=app, user_id=user_id, requirement=requirement).first()
    )
    if link is not None and link.connection.type == ctype:
        connection = link.connection
        before = connection.config or {}
        connection.config = config
        connection.status = Connection.Status.ACTIVE
        connection.updated_by = actor
        connection.save(update_fields=["config", "status", "updated_by", "updated_at"])
    else:
        before = {}
        if link is not None:
            link.connection.delete()  # cascades to the stale link
        connection = Connection.objects.create(
            project_id=app.project_id, name=f"{user_id} · {requirement.name}"[:200], type=ctype, config=config,
            status=Connection.Status.ACTIVE, app=app, user_id=user_id, created_by=actor, updated_by=actor,
        )
        link = EndUserLink.objects.create(app=app, user_id=user_id, requirement=requirement, connection=connection)
    changed = sorted(k for k in set(before) | set(config) if before.get(k) != config.get(k))
    ConnectionConfigChange.objects.create(
        connection=connection, actor=actor, changed_fields=changed, fingerprint=keyed_fingerprint(config)
    )
    return link


def end_user_authorize(
    *, app: App, user_id: str, requirement: Requirement, connect_token_id: str, browser_binding: str = "",
    return_to: str = "",
) -> str:
    """Start the OAuth2 flow for an end user's requirement; returns the provider's authorization URL."""
    if connection_types.canonical_type(requirement.connection_type) != "oauth2":
        raise BadRequest("This requirement takes credentials, not an OAuth2 authorization.",
                         details={"requirement": ["not an oauth2 requirement"]})
    return oauth.start_end_user_authorization(
        app=app, user_id=user_id, requirement=requirement, connect_token_id=connect_token_id,
        browser_binding=browser_binding, return_to=return_to,
    )


def link_revoke(*, link: EndUserLink) -> dict:
    """Unlink: revoke the grant upstream where the provider supports it (RFC 7009), then delete the
    link and its connection. The answer reports the outcome: `revoked_upstream` is True, False (the
    provider refused or could not be reached) or None (nothing to revoke, or no revocation URL).
    """
    connection = link.connection
    revoked = oauth.revoke_upstream(connection=connection) if connection.type == "oauth2" else None
    with transaction.atomic():
        # Deleting the connection deletes the link with it (EndUserLink.connection cascades).
        Connection.objects.filter(pk=connection.pk).delete()
    return {"message": "unlinked", "revoked_upstream": revoked}


def end_user_unlink(*, app: App, user_id: str, requirement: Requirement) -> dict:
    link = end_user_link(app=app, user_id=user_id, requirement=requirement)
    if link is None:
        raise NotFound("Nothing is linked for this requirement.")
    return link_revoke(link=link)
