"""Writes of the webhooks app: endpoints (create, update, delete, rotate the secret), the test event and
redelivery. Keyword-only; validation errors are 400 with details keyed by field."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import Project
from apps.connections.signals import EVENT_TYPES
from apps.core.errors import BadRequest, Conflict
from apps.core.formats import rfc3339
from apps.deployments.models import App
from apps.engine import BlockedAddressError, check_url_target

from .events import deliveries_create, deliveries_queue, new_event_id
from .models import WebhookDelivery, WebhookEndpoint

ALL_EVENTS = "*"
TEST_EVENT = "webhook.test"
MAX_EVENTS = 20
MAX_APP_IDS = 100


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes (the key is the decoded bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def validate_url(url: str) -> None:
    """HTTPS and a public address, unless ALLOW_PRIVATE_NETWORK_TARGETS (dev/tests); as run callbacks. The guard's
    one message whether the name did not resolve or resolved to a forbidden address."""
    try:
        check_url_target(url, allow_private=bool(settings.ALLOW_PRIVATE_NETWORK_TARGETS))
    except BlockedAddressError as exc:
        raise BadRequest("Webhook URLs must use HTTPS and resolve to public addresses.", details={"url": [str(exc)]},
                         code=exc.code)
    except ValueError as exc:
        raise BadRequest("Webhook URLs must use HTTPS and resolve to public addresses.", details={"url": [str(exc)]})


def validate_events(events: Any) -> list[str]:
    """A non-empty list of known event types, or ["*"] (every type, including ones added later)."""
    if not isinstance(events, list) or not events or len(events) > MAX_EVENTS:
        raise BadRequest("Invalid request.", details={"events": [f"must be a list of 1 to {MAX_EVENTS} event types"]})
    unknown = [e for e in events if e != ALL_EVENTS and e not in EVENT_TYPES]
    if unknown:
        raise BadRequest("Invalid request.", details={"events": [
            f"unknown event type {e!r}; known: {', '.join(EVENT_TYPES)} or '*'" for e in unknown[:5]]})
    if ALL_EVENTS in events and len(events) > 1:
        raise BadRequest("Invalid request.", details={"events": ["'*' stands alone"]})
    return list(dict.fromkeys(events))


def validate_app_ids(*, project: Project, app_ids: Any) -> list[str]:
    """App IDs of the endpoint's project (another project's App is refused like an unknown one)."""
    if not isinstance(app_ids, list) or len(app_ids) > MAX_APP_IDS:
        raise BadRequest("Invalid request.", details={"app_ids": [f"must be a list of at most {MAX_APP_IDS} App IDs"]})
    wanted = list(dict.fromkeys(str(a) for a in app_ids))
    found = {str(i) for i in App.objects.filter(project=project, id__in=wanted).values_list("id", flat=True)}
    missing = [a for a in wanted if a not in found]
    if missing:
        raise BadRequest("Invalid request.", details={"app_ids": [f"no App {a} in this project" for a in missing[:5]]})
    return wanted


def webhook_create(*, project: Project, url: str, events: Any, app_ids: Any = None, description: str = "",
                   enabled: bool = True) -> WebhookEndpoint:
    """The answer's `secret` is the one time it is shown."""
    validate_url(url)
    endpoint = WebhookEndpoint(
        project=project, url=url, events=validate_events(events),
        app_ids=validate_app_ids(project=project, app_ids=app_ids or []), description=description or "",
        enabled=enabled, secret=new_secret(),
    )
    endpoint.save()
    return endpoint


def webhook_update(*, endpoint: WebhookEndpoint, **changes: Any) -> WebhookEndpoint:
    """Change any of url, events, app_ids, description, enabled (absent ones keep their value)."""
    fields = []
    if "url" in changes:
        validate_url(changes["url"])
        endpoint.url = changes["url"]
        fields.append("url")
    if "events" in changes:
        endpoint.events = validate_events(changes["events"])
        fields.append("events")
    if "app_ids" in changes:
        endpoint.app_ids = validate_app_ids(project=endpoint.project, app_ids=changes["app_ids"] or [])
        fields.append("app_ids")
    for name in ("description", "enabled"):
        if name in changes:
            setattr(endpoint, name, changes[name])
            fields.append(name)
    if fields:
        endpoint.save(update_fields=[*fields, "updated_at"])
    return endpoint


def webhook_delete(*, endpoint: WebhookEndpoint) -> None:
    """Deletes the endpoint and its deliveries (owed ones are never sent)."""
    endpoint.delete()


def webhook_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new secret at once; the old one stops signing. Deliveries still owed are signed with the new one at their
    next attempt (every attempt signs afresh)."""
    endpoint.secret = new_secret()
    endpoint.save(update_fields=["secret", "updated_at"])
    return endpoint


def _require_enabled(endpoint: WebhookEndpoint) -> None:
    if not endpoint.enabled:
        raise Conflict("This webhook is disabled; enable it first.", code="webhook_disabled")


@transaction.atomic
def webhook_send_test(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Send a `webhook.test` event to this endpoint only (whatever it subscribes to): a signed delivery like any
    other, to check the URL and the receiver's signature verification."""
    _require_enabled(endpoint)
    payload = {"type": TEST_EVENT, "id": new_event_id(), "timestamp": rfc3339(timezone.now()),
               "data": {"webhook_id": str(endpoint.id), "project_id": str(endpoint.project_id),
                        "message": "This is a test event."}}
    return deliveries_create(endpoints=[endpoint], payload=payload)[0]


@transaction.atomic
def webhook_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """A new delivery of the same event (same event ID, hence the same `webhook-id`, and the same body) to the same
    endpoint, whatever the first one's status; the first keeps its history."""
    _require_enabled(delivery.endpoint)
    return deliveries_queue(endpoints=[delivery.endpoint], event_id=delivery.event_id, event_type=delivery.event_type,
                            body=delivery.body, redelivery_of=delivery)[0]
