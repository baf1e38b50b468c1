"""Liveness and readiness (SPEC §15), for load balancers and orchestrators that probe every few seconds.

- `/healthz`: the process answers HTTP. Touches nothing else, so a database outage never gets a web
  process restarted (that would not bring the database back).
- `/readyz`: this process can serve: the database answers, every migration this code knows is applied,
  Redis answers when the `celery` executor or a Redis cache is configured, and FERNET_KEYS open one stored
  secret per encrypted field (if any is stored).

Both are answered by `ServiceHealthMiddleware`, before host routing and the HTTPS redirect: a load
balancer probes over plain HTTP with its own Host (often an IP literal). The answers name checks and fixed
phrases only, never an exception message, a host name or a key.

Cost per `/readyz`: `SELECT 1`, one `SELECT ... LIMIT 1` per encrypted field (five), a Redis PING when
configured. The migration check loads the migration graph, so a positive answer is kept for the life of
the process (the code cannot gain migrations without a restart; a negative one is checked again).
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

from .crypto import DecryptionError, decrypt_json
from .fields import ENCRYPTED_FIELDS

OK = "ok"

_migrations_applied = threading.Event()
_redis_clients: dict[str, Any] = {}
_redis_lock = threading.Lock()


def check_database() -> str:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        return "unavailable"
    return OK


def check_migrations() -> str:
    if _migrations_applied.is_set():
        return OK
    try:
        executor = MigrationExecutor(connections["default"])
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError:
        return "unavailable"
    if pending:
        return f"{len(pending)} migration(s) not applied: run `manage.py migrate`"
    _migrations_applied.set()
    return OK


def check_stored_secrets() -> str:
    """FERNET_KEYS open one stored secret per encrypted field (no ORDER BY: any row, index-free)."""
    connection = connections["default"]
    quote = connection.ops.quote_name
    try:
        with connection.cursor() as cursor:
            for field in ENCRYPTED_FIELDS:
                table, column = field.model._meta.db_table, field.column
                cursor.execute(f"SELECT {quote(column)} FROM {quote(table)} WHERE {quote(column)} IS NOT NULL LIMIT 1")
                row = cursor.fetchone()
                if row is not None:
                    decrypt_json(row[0])
    except DecryptionError:
        return f"a stored {field.model._meta.label}.{field.name} cannot be decrypted with FERNET_KEYS"
    except DatabaseError:
        return "unavailable"
    return OK


def _redis_client(url: str):
    import redis  # a requirement (kombu's Redis transport); imported here because only celery setups probe it

    with _redis_lock:
        client = _redis_clients.get(url)
        if client is None:
            # Short timeouts: a probe must answer before the prober's own timeout, not hang with Redis.
            client = _redis_clients[url] = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        return client


def check_redis_broker() -> str:
    import redis

    try:
        _redis_client(settings.CELERY_BROKER_URL).ping()
    except (redis.RedisError, OSError):
        return "unavailable"
    return OK


def check_cache(alias: str) -> str:
    try:
        caches[alias].get("readyz-probe")
    except Exception:  # any backend's connection error (redis-py's, pymemcache's...)
        return "unavailable"
    return OK


def readiness() -> tuple[bool, dict[str, str]]:
    checks = {"database": check_database()}
    if checks["database"] == OK:
        checks["migrations"] = check_migrations()
        checks["secrets"] = check_stored_secrets()
    if settings.RUNS_EXECUTOR == "celery" and settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://", "unix://")):
        checks["redis"] = check_redis_broker()
    for alias, config in settings.CACHES.items():
        if "redis" in config.get("BACKEND", "").lower():
            checks[f"cache.{alias}"] = check_cache(alias)
    return all(value == OK for value in checks.values()), checks


def reset() -> None:
    """Forget the cached migration answer and Redis clients (tests)."""
    _migrations_applied.clear()
    with _redis_lock:
        _redis_clients.clear()
