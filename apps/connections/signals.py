"""Lifecycle events of end-user links and connections (SPEC §13 "Webhooks").

Whoever changes a link's or connection's state sends `connection_event` *inside the transaction that made the
change*, and only when the change really happened (the conditional UPDATE matched, the row was inserted...):
that is how "exactly one event per state change" holds under races. The receiver (apps.webhooks) builds the
payload at once, from rows that still exist (send `link.deleted` before deleting), and writes the deliveries in
the same transaction, so an event exists if and only if the change was committed.

A signal, not an import: connections and connect sit below the webhooks app in the layer order
(docs/architecture.md), and must not import it.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal

LINK_CREATED = "link.created"
LINK_RECONNECTED = "link.reconnected"
LINK_DELETED = "link.deleted"
CONNECTION_REFRESH_FAILED = "connection.refresh_failed"
CONNECTION_EXPIRED = "connection.expired"
CONNECTION_UNAUTHORIZED = "connection.unauthorized"
CONNECTION_RECOVERED = "connection.recovered"
REQUIREMENT_UNSATISFIED = "requirement.unsatisfied"

EVENT_TYPES: tuple[str, ...] = (
    LINK_CREATED, LINK_RECONNECTED, LINK_DELETED, CONNECTION_REFRESH_FAILED, CONNECTION_EXPIRED,
    CONNECTION_UNAUTHORIZED, CONNECTION_RECOVERED, REQUIREMENT_UNSATISFIED,
)

# Keyword arguments: event_type (one of EVENT_TYPES), connection_id (UUID), data (dict of extra, non-secret
# fields merged into the payload's `data`, e.g. {"attempt": 3}).
connection_event = Signal()


def emit(event_type: str, *, connection_id: Any, data: dict[str, Any] | None = None) -> None:
    """Announce a state change of a connection (and its end-user link, if any). Call inside the transaction."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    connection_event.send(sender=None, event_type=event_type, connection_id=connection_id, data=dict(data or {}))
