from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import Project
from apps.core.actors import actor_label
from apps.core.crypto import keyed_fingerprint
from apps.core.errors import BadRequest, Conflict
from apps.engine import connection_types, origins
from apps.engine.connection_types import ConfigError

from . import signals
from .models import Connection, ConnectionConfigChange, OAuthProvider
from .oauth_client import TOKEN_FIELDS


def _validated(type_name: str, config: Any, *, base: dict | None = None) -> dict:
    try:
        return connection_types.validate_config(type_name, config, partial_base=base)
    except ConfigError as exc:
        raise BadRequest("Invalid connection config.", details={"config": exc.errors}) from exc


def _require_object(config: Any) -> None:
    # Checked up front: the oauth2 paths spread `config` into a dict before the type's own validation.
    if not isinstance(config, Mapping):
        raise BadRequest("Invalid connection config.", details={"config": {"config": ["must be an object"]}})


class _Keep:
    """`expires_at` not given: the stored expiry stays as it is."""


KEEP = _Keep()


def connection_write_config(
    *,
    connection: Connection,
    config: dict,
    actor: Any,
    status: str | None = None,
    expires_at: datetime | None | _Keep = KEEP,
    changes: Mapping[str, Any] | None = None,
) -> Connection:
    """The one writer of a connection's config and of its history row: every config change goes through here.

    An unsaved `connection` is inserted; a saved one must already be locked (or just created) by the caller,
    which validated `config`. `status` and `expires_at` are written only when given; `changes`: other columns
    written in the same UPDATE, none secret (the health and refresh schedule a token store sets; `account` and
    `last_verified_at` after a link-time verification). The history row records
    who, when, which fields changed and a keyed fingerprint of the new config: never a value.
    """
    label = actor_label(actor)[:200]
    adding = connection._state.adding
    before = {} if adding else (connection.config or {})
    connection.config = config
    connection.updated_by = label
    fields = ["config"]
    if status is not None:
        connection.status = status
        fields.append("status")
    if not isinstance(expires_at, _Keep):
        connection.expires_at = expires_at
        fields.append("expires_at")
    for name, value in (changes or {}).items():
        setattr(connection, name, value)
        fields.append(name)
    if adding:
        connection.save(force_insert=True)
    else:
        connection.save(update_fields=[*fields, "updated_by", "updated_at"])
    changed = sorted(k for k in set(before) | set(config) if before.get(k) != config.get(k))
    ConnectionConfigChange.objects.create(
        connection=connection, actor=label, changed_fields=changed, fingerprint=keyed_fingerprint(config)
    )
    return connection


@transaction.atomic
def connection_create(
    *,
    project: Project,
    name: str,
    type: str,
    config: dict,
    actor=None,
    provider: OAuthProvider | None = None,
) -> Connection:
    """Create a shared (project-owned) connection. OAuth2 connections start `incomplete` until consent."""
    try:
        canonical = connection_types.canonical_type(type)
    except ConfigError as exc:
        raise BadRequest("Unknown connection type.", details=exc.errors) from exc
    name = (name or "").strip()
    if not name:
        raise BadRequest("Invalid connection.", details={"name": ["this field is required"]})
    _require_object(config)
    if canonical == "oauth2":
        provider = provider or _provider_from_config(project=project, config=config)
        config = {**config, "provider_id": str(provider.id)}
    normalized = _validated(canonical, config)
    status = Connection.Status.ACTIVE
    if canonical == "oauth2" and not normalized.get("access_token"):
        status = Connection.Status.INCOMPLETE
    if Connection.objects.filter(project=project, name=name, app__isnull=True).exists():
        raise Conflict("A connection with this name already exists in the project.", details={"name": [name]})
    try:
        with transaction.atomic():
            connection = Connection(
                project=project, name=name, type=canonical, status=status, provider=provider,
                created_by=actor_label(actor)[:200],
            )
            return connection_write_config(connection=connection, config=normalized, actor=actor)
    except IntegrityError as exc:
        raise Conflict("A connection with this name already exists in the project.") from exc


def _provider_from_config(*, project: Project, config: dict) -> OAuthProvider:
    provider_id = (config or {}).get("provider_id")
    provider = OAuthProvider.objects.filter(project=project, id=provider_id).first() if provider_id else None
    if provider is None:
        raise BadRequest("Invalid connection config.", details={"config": {"provider_id": ["unknown provider"]}})
    return provider


@transaction.atomic
def connection_update_config(*, connection: Connection, config: dict, actor=None) -> Connection:
    """Replace the config; the ID, name and type stay. Secret fields sent blank or masked keep their value.

    The history entry records who, when, which fields and a keyed fingerprint: never a value.
    """
    _require_object(config)
    locked = Connection.objects.select_for_update().get(pk=connection.pk)
    before = locked.config or {}
    if locked.type == "oauth2":
        # Token fields belong to the authorization flow; an edit can only change the non-token fields,
        # and never the origin the tokens go to while tokens are stored (authorize a new connection).
        if before.get("access_token") and before.get("url") and (
            origins.origin(config.get("url") or "") != origins.origin(before["url"])
        ):
            raise BadRequest(
                "Invalid connection config.",
                details={"config": {"url": ["cannot change while tokens are stored; authorize a new connection"]}},
            )
        config = {**config, "provider_id": before.get("provider_id")}
        for token_field in TOKEN_FIELDS:
            config.pop(token_field, None)
            if token_field in before:
                config[token_field] = before[token_field]
    normalized = _validated(locked.type, config, base=before)
    status = None
    if locked.app_id is None and locked.type != "oauth2" and locked.status != Connection.Status.ACTIVE:
        # New credentials for a shared connection: give them a chance (a 401 will flag them again).
        status = Connection.Status.ACTIVE
    return connection_write_config(connection=locked, config=normalized, actor=actor, status=status)


def connection_mark_unauthorized(*, connection: Connection, reason: str) -> bool:
    """An active connection the provider refused on use (HTTP 401) becomes `unauthorized`: one conditional
    UPDATE, and `connection.unauthorized` only when it changed the row (racing runs send it once)."""
    with transaction.atomic():
        changed = Connection.objects.filter(pk=connection.pk, status=Connection.Status.ACTIVE).update(
            status=Connection.Status.UNAUTHORIZED, status_reason=reason[:500], updated_at=timezone.now(),
        )
        if changed:
            signals.emit(signals.CONNECTION_UNAUTHORIZED, connection_id=connection.pk)
    connection.status = Connection.Status.UNAUTHORIZED
    return bool(changed)


def connection_set_status(*, connection: Connection, status: str) -> None:
    """Only the status (e.g. `unauthorized` after a provider 401): one UPDATE, the config is untouched."""
    Connection.objects.filter(pk=connection.pk).update(status=status)
    connection.status = status


@transaction.atomic
def oauth_provider_create(
    *,
    project: Project,
    name: str,
    authorize_url: str,
    token_url: str,
    client_id: str,
    client_secret: str = "",
    scopes: list[str] | None = None,
    revoke_url: str = "",
    pkce: bool = True,
    userinfo_url: str = "",
) -> OAuthProvider:
    if OAuthProvider.objects.filter(project=project, name=name).exists():
        raise Conflict("An OAuth2 provider with this name already exists in the project.")
    return OAuthProvider.objects.create(
        project=project, name=name, authorize_url=authorize_url, token_url=token_url, client_id=client_id,
        client_secret=client_secret or "", scopes=list(scopes or []), revoke_url=revoke_url or "", pkce=pkce,
        userinfo_url=userinfo_url or "",
    )


@transaction.atomic
def oauth_provider_update(*, provider: OAuthProvider, **changes: Any) -> OAuthProvider:
    """Update the given fields; a blank client_secret keeps the stored one (write-only)."""
    allowed = {"name", "authorize_url", "token_url", "revoke_url", "userinfo_url", "client_id", "client_secret",
               "scopes", "pkce"}
    unknown = set(changes) - allowed
    if unknown:
        raise BadRequest("Unknown fields.", details={k: ["not allowed"] for k in sorted(unknown)})
    if changes.get("client_secret") in (None, "", connection_types.MASK):
        changes.pop("client_secret", None)
        # The client secret (and every connection's refresh token) goes to these URLs: a new one needs
        # the secret typed again, so a client that cannot read the secret cannot redirect it either.
        # userinfo_url too: every new access token is sent there.
        moved = [f for f in ("authorize_url", "token_url", "revoke_url", "userinfo_url")
                 if f in changes and (changes[f] or "") != (getattr(provider, f) or "")]
        if moved and provider.client_secret:
            raise BadRequest(
                "Invalid OAuth2 provider.",
                details={"client_secret": [f"re-enter the client secret: {', '.join(moved)} changed"]},
            )
    for key, value in changes.items():
        setattr(provider, key, value)
    provider.save()
    return provider
