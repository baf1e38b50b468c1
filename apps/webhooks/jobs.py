"""Delivering webhooks: the background job of one delivery, and the sweep that queues owed ones again.

The attempt itself (claim, Standard Webhooks signature, guarded POST, classification, backoff, `dead`) is
apps.runs.delivery's, the mechanism run callbacks use; this module supplies the row, the endpoint's URL and
secret and the body fixed when the event happened. `webhook-id` is the event ID (`evt_...`): the same on every
retry and every redelivery, so a receiver de-duplicates on it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.runs import delivery as signed
from apps.runs.dispatch import job, submit

from .models import WebhookDelivery

logger = logging.getLogger(__name__)

USER_AGENT = "runtime-connection-platform-webhooks/1"


def deliver(delivery_id) -> float | None:
    """Make one attempt. Returns the delay before the next one, or None when the delivery is settled (or the
    attempt is not this call's to make)."""
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(id=delivery_id).first()
    if delivery is None or delivery.status not in signed.OWED or signed.not_due(delivery):
        return None
    attempt = signed.claim(WebhookDelivery, delivery)
    if attempt is None:
        return None
    endpoint = delivery.endpoint
    if not endpoint.enabled:
        # Disabled after the event was queued: nothing is sent, and the delivery says why.
        outcome = signed.Outcome(signed.DEAD, None, "endpoint disabled", None)
    else:
        outcome = signed.post_signed(
            url=endpoint.url, secret=endpoint.secret, message_id=delivery.event_id, body=delivery.body.encode(),
            attempt=attempt, user_agent=USER_AGENT,
        )
    delay = signed.record(WebhookDelivery, delivery.id, outcome, kind="webhook")
    logger.info("webhook delivery %s (%s) attempt %s: %s", delivery.id, delivery.event_type, attempt, outcome.status)
    return delay


@job("webhooks.deliver")
def deliver_webhook(delivery_id: str) -> str:
    """The background job of one delivery (thread pool or Celery task): one attempt, the next queued after its delay."""
    delay = deliver(delivery_id)
    if delay is not None:
        submit(deliver_webhook, delivery_id, delay=delay)
    return "retrying" if delay is not None else "settled"


def retry_sweep(*, now=None) -> dict[str, int]:
    """The periodic sweep (scheduler job `webhooks.retry_sweep`): queue again deliveries owed for more than a
    sweep period: due and not attempted (a process died holding the timer, a message the broker never got), or
    never attempted since creation. Work still queued normally is due less than a period ago and left alone; a
    duplicate that slips through is harmless (the attempt claim)."""
    now = now or timezone.now()
    grace = timedelta(seconds=float(settings.WEBHOOK_RETRY_SWEEP_SECONDS))
    overdue = WebhookDelivery.objects.filter(status__in=signed.OWED).filter(
        Q(next_attempt_at__lt=now - grace) | Q(next_attempt_at__isnull=True, created_at__lt=now - grace)
    )
    ids = [str(i) for i in overdue.values_list("id", flat=True)]
    for delivery_id in ids:
        submit(deliver_webhook, delivery_id)
    if ids:
        logger.warning("webhook sweep: %s delivery(ies) were overdue and are queued again", len(ids))
    return {"webhooks": len(ids)}
