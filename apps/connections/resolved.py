"""A Connection as the engine sees it (ResolvedConnection): the one mapping, used by credential resolution
and by the admin's "test connection" check. The config is the decrypted one: callers are the code allowed
to hand secrets to the engine."""

from __future__ import annotations

from apps.engine.types import ResolvedConnection

from .models import Connection


def to_resolved_connection(connection: Connection, *, requirement_id: str | None = None) -> ResolvedConnection:
    return ResolvedConnection(
        connection_id=str(connection.id),
        type=connection.type,
        config=connection.config or {},
        owner="end_user" if connection.app_id else "project",
        user_id=connection.user_id or None,
        requirement_id=requirement_id,
    )
