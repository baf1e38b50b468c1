"""Reads of workflows for the run path."""

from __future__ import annotations

import threading

from django.db import connection

from apps.core.rawsql import Columns

from .models import WorkflowVersion

_VERSION = Columns(WorkflowVersion, "v")
_VERSION_SQL = None  # built on first use (quoting belongs to the connection)
VERSION_CACHE_SIZE = 512

# Per-process cache of workflow versions by ID. Safe without invalidation because a version is immutable
# (WorkflowVersion.save/delete refuse to change one): what an App runs is decided by its current
# deployment, read on every request (apps.deployments.selectors.app_route), never by this cache. Each
# request gets its own instance; the parsed definition inside is shared and must be treated as read-only
# (the engine never writes to it).
_versions: dict[str, tuple[list, list]] = {}
_versions_lock = threading.Lock()


def version_by_id(*, version_id) -> WorkflowVersion | None:
    """The version with this ID: from this process's cache, or one query the first time."""
    key = str(version_id)
    cached = _versions.get(key)
    if cached is None:
        global _VERSION_SQL
        if _VERSION_SQL is None:
            table = connection.ops.quote_name(WorkflowVersion._meta.db_table)
            _VERSION_SQL = f"SELECT {_VERSION.sql()} FROM {table} v WHERE v.id = %s"
        with connection.cursor() as cursor:
            cursor.execute(_VERSION_SQL, [WorkflowVersion._meta.pk.get_db_prep_value(version_id, connection)])
            row = cursor.fetchone()
        if row is None:
            return None
        version = _VERSION.load(row)
        cached = (_VERSION.attnames, [getattr(version, name) for name in _VERSION.attnames])
        with _versions_lock:
            if len(_versions) >= VERSION_CACHE_SIZE:
                _versions.pop(next(iter(_versions)))  # the oldest entry
            _versions[key] = cached
    attnames, values = cached
    return WorkflowVersion.from_db(connection.alias, attnames, values)


def clear_version_cache() -> None:
    with _versions_lock:
        _versions.clear()
