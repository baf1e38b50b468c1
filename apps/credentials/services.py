"""Credential resolution: the only code that decrypts connection configs for runs.

One batched call per run resolves every reference of the version: shared connection IDs (within the
App's project) and requirement IDs (the connection linked for (App, user_id, requirement), counted only
when `active`). Constant query count whatever the number of references:
  1. shared connections of the App's project among the IDs, and the links of (app, user_id) among the
     requirement IDs with their connections, in one statement,
  2. requirement names/titles, only when something is unsatisfied,
  3. the audit row (written by the caller in the run's transaction on the synchronous path).
OAuth2 tokens within 60 s of expiry are refreshed first (single-flight per connection).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import connection as db

from apps.connect.models import EndUserLink
from apps.connections.models import Connection
from apps.connections.oauth_client import near_expiry
from apps.connections.oauth_flows import RefreshOutcome, force_refresh_outcome, refresh_if_needed
from apps.connections.resolved import to_resolved_connection
from apps.connections.services import connection_mark_unauthorized
from apps.core import metrics
from apps.core.rawsql import Columns, insert_instances, instance_batch
from apps.deployments.models import App
from apps.engine.types import Resolution, ResolvedConnection
from apps.workflows.models import Requirement

from .models import CredentialAccess

logger = logging.getLogger(__name__)

def _uuids(values: Sequence[Any]) -> list[str]:
    result = []
    for value in values:
        try:
            result.append(str(uuid.UUID(str(value))))
        except ValueError:
            continue
    return list(dict.fromkeys(result))


def _near_expiry(connection: Connection) -> bool:
    return connection.type == "oauth2" and near_expiry(connection.config or {})


_CONNECTION = Columns(Connection, "c")


def _load(*, app_id: str, user_id: str | None, connection_ids: list[str], requirement_ids: list[str]):
    """The shared connections of the App's project among `connection_ids`, and the connections linked for
    (app, user_id) among `requirement_ids` as (requirement ID, connection) pairs: one statement for both
    (hand-written, see apps.core.rawsql), none when the version references nothing."""
    quote, prep = db.ops.quote_name, Connection._meta.pk.get_db_prep_value
    parts, params = [], []
    if connection_ids:
        parts.append(
            f"SELECT NULL AS requirement_id, {_CONNECTION.sql()} FROM {quote(Connection._meta.db_table)} c "
            f"INNER JOIN {quote(App._meta.db_table)} a ON a.project_id = c.project_id "
            f"WHERE a.id = %s AND c.app_id IS NULL AND c.id IN ({', '.join(['%s'] * len(connection_ids))})"
        )
        params += [prep(app_id, db), *(prep(cid, db) for cid in connection_ids)]
    if requirement_ids and user_id:
        parts.append(
            f"SELECT l.requirement_id, {_CONNECTION.sql()} FROM {quote(EndUserLink._meta.db_table)} l "
            f"INNER JOIN {quote(Connection._meta.db_table)} c ON c.id = l.connection_id "
            f"WHERE l.app_id = %s AND l.user_id = %s AND l.requirement_id IN ({', '.join(['%s'] * len(requirement_ids))})"
        )
        params += [prep(app_id, db), user_id, *(prep(rid, db) for rid in requirement_ids)]
    shared: list[Connection] = []
    links: list[tuple[str, Connection]] = []
    if not parts:
        return shared, links
    with db.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params)
        rows = cursor.fetchall()
    for row in rows:
        connection = _CONNECTION.load(row, 1)
        if row[0] is None:
            shared.append(connection)
        else:
            links.append((str(uuid.UUID(str(row[0]))), connection))
    return shared, links


def resolve_credentials(
    *,
    connection_ids: Sequence[str],
    requirement_ids: Sequence[str],
    app_id: str,
    user_id: str | None,
    run_id: str | None,
    requester: str = CredentialAccess.Requester.IN_PROCESS,
    audit_sink: list[CredentialAccess] | None = None,
) -> Resolution:
    """Resolve a run's references. Unsatisfied requirements are reported, never guessed; always audited.

    With `audit_sink` the (unsaved) audit row is appended there instead of written: the synchronous run
    path writes it in the same transaction as the run, saving a write transaction per run.
    """
    connection_ids, requirement_ids = _uuids(connection_ids), _uuids(requirement_ids)
    shared, links = _load(app_id=app_id, user_id=user_id, connection_ids=connection_ids, requirement_ids=requirement_ids)

    linked = [connection for _, connection in links if connection.status == Connection.Status.ACTIVE]
    stale = [c.id for c in [*shared, *linked] if _near_expiry(c)]
    if stale:
        refresh_if_needed(connection_ids=stale)
        shared, links = _load(
            app_id=app_id, user_id=user_id, connection_ids=connection_ids, requirement_ids=requirement_ids
        )

    resolution = Resolution()
    for connection in shared:
        resolution.connections[str(connection.id)] = to_resolved_connection(connection)
    for requirement_id, connection in links:
        if connection.status == Connection.Status.ACTIVE:
            resolution.requirements[requirement_id] = to_resolved_connection(connection, requirement_id=requirement_id)
    missing_requirements = [rid for rid in requirement_ids if rid not in resolution.requirements]
    if missing_requirements:
        by_id = {str(r.id): r for r in Requirement.objects.filter(id__in=missing_requirements)}
        resolution.unsatisfied = [
            {"id": rid, "name": by_id[rid].name, "title": by_id[rid].title}
            for rid in missing_requirements
            if rid in by_id
        ]
    missing_connections = [cid for cid in connection_ids if cid not in resolution.connections]

    outcome = CredentialAccess.Outcome.UNSATISFIED if resolution.unsatisfied else CredentialAccess.Outcome.RESOLVED
    details: dict[str, Any] = {}
    if resolution.unsatisfied:
        details["unsatisfied"] = [u["id"] for u in resolution.unsatisfied]
    if missing_connections:
        details["missing_connections"] = missing_connections
    details["served"] = {
        "connections": sorted(resolution.connections),
        "requirements": {rid: c.connection_id for rid, c in resolution.requirements.items()},
    }
    audit = CredentialAccess(
        requester=requester, run_id=run_id, app_id=app_id, user_id=user_id or "",
        connection_ids=connection_ids, requirement_ids=requirement_ids, outcome=outcome, details=details,
    )
    if audit_sink is None:
        audit.save(force_insert=True)
    else:
        audit_sink.append(audit)
    metrics.credential_resolution(outcome=outcome)
    return resolution


class RefusalLog:
    """Refused internal-API calls, counted and logged instead of audited one row each (SPEC §12).

    An audit row per refusal would let anyone who can reach the platform host fill the audit table, so
    refusals are counted here (per process, per reason) and logged: one warning line per reason per
    `interval` seconds at most, carrying how many refusals it stands for. Resolved calls are still audited.
    """

    def __init__(self, *, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()  # every refusal since the process started, by reason
        self._suppressed: Counter[str] = Counter()
        self._last_logged: dict[str, float] = {}

    def record(self, *, reason: str, remote_addr: str, interval: float) -> None:
        with self._lock:
            self.counts[reason] += 1
            now = self._clock()
            last = self._last_logged.get(reason)
            if last is not None and now - last < interval:
                self._suppressed[reason] += 1
                return
            self._last_logged[reason] = now
            suppressed = self._suppressed.pop(reason, 0)
            total = self.counts[reason]
        logger.warning(
            "internal API call refused: %s, from %s (%d more refused for this reason since the last such line, "
            "not logged; %d in this process)", reason, remote_addr[:64] or "unknown", suppressed, total,
        )

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self._suppressed.clear()
            self._last_logged.clear()


internal_api_refusals = RefusalLog()


def internal_api_refusal_record(*, reason: str, remote_addr: str) -> None:
    """Count and (rate-limited) log a refused internal-API call. Never a database write."""
    internal_api_refusals.record(
        reason=reason, remote_addr=remote_addr, interval=settings.INTERNAL_API_REFUSAL_LOG_INTERVAL_SECONDS
    )


def handle_unauthorized(*, connection_id: str, run_id: str | None) -> Connection | None:
    """The provider answered 401 with this connection.

    OAuth2: one refresh attempt; the refreshed connection is returned for one retry. A refresh that failed
    recorded its own outcome (SPEC §13): a transient failure leaves the status as it is (health degraded),
    a refused grant or client set `expired`/`unauthorized` already. Otherwise (no refresh possible) an
    end-user connection is marked `unauthorized`, so the status endpoint shows its requirement unsatisfied.
    Shared connections are left alone: an admin fixes them by rotation.
    """
    connection = Connection.objects.filter(id=connection_id).first()
    if connection is None:
        return None
    if connection.type == "oauth2":
        outcome = force_refresh_outcome(connection_id=connection.id)
        if outcome == RefreshOutcome.REFRESHED:
            return Connection.objects.get(id=connection.id)
        if outcome != RefreshOutcome.SKIPPED:
            return None
    if connection.app_id is not None:
        connection_mark_unauthorized(connection=connection, reason="The provider refused the credentials (HTTP 401).")
        logger.info("end-user connection %s marked unauthorized after a provider 401 (run %s)", connection.id, run_id)
    return None


class InProcessResolver:
    """The engine's resolver inside the web tier or a worker that shares the database.

    `defer_audit=True`: audit rows collect in `pending_audit` and the caller must write them
    (`write_pending_audit`), normally in the transaction that stores the run.
    """

    requester = CredentialAccess.Requester.IN_PROCESS

    def __init__(self, *, defer_audit: bool = False):
        self.pending_audit: list[CredentialAccess] | None = [] if defer_audit else None

    def resolve(self, *, connection_ids, requirement_ids, app_id, user_id, run_id) -> Resolution:
        return resolve_credentials(
            connection_ids=connection_ids, requirement_ids=requirement_ids, app_id=app_id,
            user_id=user_id, run_id=run_id, requester=self.requester, audit_sink=self.pending_audit,
        )

    def pending_audit_batch(self) -> list:
        """The pending rows as (model, columns, rows) for apps.core.rawsql.insert_together, or []."""
        return [instance_batch(self.pending_audit)] if self.pending_audit else []

    def write_pending_audit(self) -> None:
        """Write the pending rows. Not cleared: if the caller's transaction rolls back, calling this again
        (outside it) writes them after all."""
        if self.pending_audit:
            insert_instances(self.pending_audit)

    def on_unauthorized(self, *, connection: ResolvedConnection, run_id: str | None) -> ResolvedConnection | None:
        refreshed = handle_unauthorized(connection_id=connection.connection_id, run_id=run_id)
        return to_resolved_connection(refreshed, requirement_id=connection.requirement_id) if refreshed else None
