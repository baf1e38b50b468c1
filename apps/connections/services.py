from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction

from apps.accounts.models import Project
from apps.core.actors import actor_label
from apps.core.crypto import keyed_fingerprint
from apps.core.errors import BadRequest, Conflict
from apps.engine import connection_types
from apps.engine.connection_types import ConfigError

from .models import Connection, ConnectionConfigChange, OAuthProvider


def _validated(type_name: str, config: Any, *, base: dict | None = None) -> dict:
    try:
        return connection_types.validate_config(type_name, config, partial_base=base)
    except ConfigError as exc:
        raise BadRequest("Invalid connection config.", details={"config": exc.errors}) from exc


def _require_object(config: Any) -> None:
    # Checked up front: the oauth2 paths spread `config` into a dict before the type's own validation.
    if not isinstance(config, Mapping):
        raise BadRequest("Invalid connection config.", details={"config": {"config": ["must be an object"]}})


def _record_change(*, connection: Connection, before: dict, after: dict, actor) -> None:
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    ConnectionConfigChange.objects.create(
        connection=connection, actor=actor_label(actor), changed_fields=changed, fingerprint=keyed_fingerprint(after)
    )


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
            connection = Connection.objects.create(
                project=project, name=name, type=canonical, config=normalized, status=status,
                provider=provider, created_by=actor_label(actor), updated_by=actor_label(actor),
            )
    except IntegrityError as exc:
        raise Conflict("A connection with this name already exists in the project.") from exc
    _record_change(connection=connection, before={}, after=normalized, actor=actor)
    return connection


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
            connection_types.origin(config.get("url") or "") != connection_types.origin(before["url"])
        ):
            raise BadRequest(
                "Invalid connection config.",
                details={"config": {"url": ["cannot change while tokens are stored; authorize a new connection"]}},
            )
        config = {**config, "provider_id": before.get("provider_id")}
        for token_field in ("access_token", "refresh_token", "expires_at", "scope", "token_type"):
            config.pop(token_field, None)
            if token_field in before:
                config[token_field] = before[token_field]
    normalized = _validated(locked.type, config, base=before)
    locked.config = normalized
    locked.updated_by = actor_label(actor)
    fields = ["config", "updated_by", "updated_at"]
    if locked.app_id is None and locked.type != "oauth2" and locked.status != Connection.Status.ACTIVE:
        # New credentials for a shared connection: give them a chance (a 401 will flag them again).
        locked.status = Connection.Status.ACTIVE
        fields.append("status")
    locked.save(update_fields=fields)
    _record_change(connection=locked, before=before, after=normalized, actor=actor)
    return locked


def connection_set_status(*, connection: Connection, status: str) -> None:
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
) -> OAuthProvider:
    if OAuthProvider.objects.filter(project=project, name=name).exists():
        raise Conflict("An OAuth2 provider with this name already exists in the project.")
    return OAuthProvider.objects.create(
        project=project, name=name, authorize_url=authorize_url, token_url=token_url, client_id=client_id,
        client_secret=client_secret or "", scopes=list(scopes or []), revoke_url=revoke_url or "", pkce=pkce,
    )


@transaction.atomic
def oauth_provider_update(*, provider: OAuthProvider, **changes: Any) -> OAuthProvider:
    """Update the given fields; a blank client_secret keeps the stored one (write-only)."""
    allowed = {"name", "authorize_url", "token_url", "revoke_url", "client_id", "client_secret", "scopes", "pkce"}
    unknown = set(changes) - allowed
    if unknown:
        raise BadRequest("Unknown fields.", details={k: ["not allowed"] for k in sorted(unknown)})
    if changes.get("client_secret") in (None, "", connection_types.MASK):
        changes.pop("client_secret", None)
        # The client secret (and every connection's refresh token) goes to these URLs: a new one needs
        # the secret typed again, so a client that cannot read the secret cannot redirect it either.
        moved = [f for f in ("authorize_url", "token_url", "revoke_url")
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
