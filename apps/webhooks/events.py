"""The receiver of `apps.connections.signals.connection_event`: builds the event payload and writes one delivery
per matching endpoint, inside the sender's transaction, so an event exists if and only if its change committed.

Payload (SPEC §13): `{"type", "id", "timestamp", "data": {"app_id", "user_id", "requirement": {"id", "name",
"title"}, "connection_id", "status", "status_reason", "account", "connect_url"?, ...extra}}`. Never a secret: it
is built from non-secret columns only (the config is never read).

`requirement.unsatisfied` is derived here, in one place, so emitters do not have to: when `connection.expired`,
`connection.unauthorized` or `link.deleted` concern an end-user link that counted, the same transaction also
sends `requirement.unsatisfied` for that (app, user_id, requirement).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.connect.services import connect_token_create
from apps.connections import signals
from apps.connections.models import Connection
from apps.core.formats import rfc3339
from apps.runs.dispatch import submit

from .jobs import deliver_webhook
from .models import WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

# Events after which the end user has to link again: the payload carries a fresh connect link for them.
CONNECT_URL_EVENTS = {signals.CONNECTION_EXPIRED, signals.CONNECTION_UNAUTHORIZED, signals.REQUIREMENT_UNSATISFIED}
# Events that make a counting link stop counting (SPEC §13 `requirement.unsatisfied`).
UNSATISFYING_EVENTS = {signals.CONNECTION_EXPIRED, signals.CONNECTION_UNAUTHORIZED, signals.LINK_DELETED}
# A link whose connection never became usable was never announced (`link.created` waits for it): its deletion
# is not announced either.
NEVER_ANNOUNCED = {Connection.Status.INCOMPLETE, Connection.Status.PENDING_VERIFICATION}


def new_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


def on_connection_event(sender=None, *, event_type: str, connection_id: Any, data: dict[str, Any] | None = None,
                        **kwargs) -> None:
    connection = Connection.objects.select_related("app", "link__requirement").filter(pk=connection_id).first()
    if connection is None:
        logger.warning("event %s for connection %s, which no longer exists: not sent", event_type, connection_id)
        return
    link = getattr(connection, "link", None) if connection.app_id else None
    if event_type == signals.LINK_DELETED and connection.status in NEVER_ANNOUNCED:
        return
    events = [event_type]
    if event_type in UNSATISFYING_EVENTS and link is not None and _counted(event_type, connection, data or {}):
        events.append(signals.REQUIREMENT_UNSATISFIED)
    endpoints = list(WebhookEndpoint.objects.filter(project_id=connection.project_id, enabled=True))
    app_id = str(connection.app_id) if connection.app_id else None
    for event in events:
        matching = [e for e in endpoints if e.wants(event_type=event, app_id=app_id)]
        if matching:
            extra = dict(data or {})
            if event == signals.REQUIREMENT_UNSATISFIED:
                extra = {**extra, "cause": event_type}  # which change made the link stop counting
            payload = event_payload(event_type=event, connection=connection, link=link, extra=extra)
            deliveries_create(endpoints=matching, payload=payload)


def _counted(event_type: str, connection: Connection, data: dict[str, Any]) -> bool:
    """Whether the link counted until this change. A deleted link counted if its connection is (still) active;
    an expiry or refusal changed an active connection unless the emitter says otherwise (`previous_status`)."""
    if event_type == signals.LINK_DELETED:
        return connection.status == Connection.Status.ACTIVE
    previous = data.get("previous_status")
    return previous in (None, Connection.Status.ACTIVE)


def event_payload(*, event_type: str, connection: Connection, link, extra: dict[str, Any]) -> dict[str, Any]:
    requirement = link.requirement if link is not None else None
    data: dict[str, Any] = {
        "app_id": str(connection.app_id) if connection.app_id else None,
        "user_id": connection.user_id or None,
        "requirement": (
            {"id": str(requirement.id), "name": requirement.name, "title": requirement.title} if requirement else None
        ),
        "connection_id": str(connection.pk),
        "status": connection.status,
        "status_reason": connection.status_reason or None,
        "account": connection.account or None,
    }
    # Extra fields of the emitter (e.g. {"attempt": 3}) never overwrite the ones above.
    data.update({k: v for k, v in extra.items() if k not in data and k != "previous_status"})
    if event_type in CONNECT_URL_EVENTS and link is not None:
        _, url, _ = connect_token_create(app=connection.app, user_id=connection.user_id)
        data["connect_url"] = url
    return {"type": event_type, "id": new_event_id(), "timestamp": rfc3339(timezone.now()), "data": data}


def deliveries_create(*, endpoints: list[WebhookEndpoint], payload: dict[str, Any]) -> list[WebhookDelivery]:
    """One delivery per endpoint of one event: same event ID, same body (the bytes fixed now)."""
    return deliveries_queue(endpoints=endpoints, event_id=payload["id"], event_type=payload["type"],
                            body=json.dumps(payload, separators=(",", ":")))


def deliveries_queue(*, endpoints: list[WebhookEndpoint], event_id: str, event_type: str, body: str,
                     redelivery_of: WebhookDelivery | None = None) -> list[WebhookDelivery]:
    """Write the deliveries; each is queued once the transaction commits (never for a change rolled back)."""
    deliveries = WebhookDelivery.objects.bulk_create([
        WebhookDelivery(endpoint=endpoint, event_id=event_id, event_type=event_type, body=body,
                        redelivery_of=redelivery_of)
        for endpoint in endpoints
    ])
    for delivery in deliveries:
        transaction.on_commit(lambda delivery_id=str(delivery.id): submit(deliver_webhook, delivery_id))
    return deliveries
