"""Callbacks of async runs: validated when the run is requested, delivered when it ends.

Each delivery POSTs `{id, status, output, error, metadata, started_at, ended_at}` (the run's masked
result plus the callback's own metadata) and is signed the Standard Webhooks way:

- `webhook-id`: the delivery's ID, the same on every retry (receivers de-duplicate on it);
- `webhook-timestamp`: Unix seconds of this attempt;
- `webhook-signature`: `v1,` + base64(HMAC-SHA256(key, f"{webhook-id}.{webhook-timestamp}.{body}")), where
  the key is the base64-decoded part of the App's `callback_signing_secret` after its `whsec_` prefix
  (the Standard Webhooks secret format, so its reference libraries verify our signatures).

The body is fixed at the first attempt (stored on the delivery), so every retry sends the same bytes;
only the timestamp and hence the signature are those of the attempt, as the standard expects.

Retries: network errors (incl. a name that does not resolve), 429 and 5xx are retried after
CALLBACK_RETRY_BASE_SECONDS, doubling each time, CALLBACK_MAX_ATTEMPTS attempts in all, then `dead`.
2xx is `delivered`. Any other answer (3xx: redirects are never followed; 4xx but 429) is `dead` at once:
the receiver said no, and asking again would not change that. A target that now resolves to a
non-public address is `dead` too (the SSRF guard refused it, before any packet was sent).

Each delivery is the background job `deliver_callback` (apps.runs.dispatch), queued when its run ends. The
signing, the POST, the classification and the next state are apps.runs.delivery's, shared with webhooks.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.core import log_context
from apps.core.errors import BadRequest
from apps.core.formats import rfc3339
from apps.engine import BlockedAddressError, check_url_target

from . import delivery as signed
from .dispatch import job, submit
from .models import CallbackDelivery, Run

logger = logging.getLogger(__name__)

SECRET_PREFIX = signed.SECRET_PREFIX
TIMEOUT_SECONDS = signed.TIMEOUT_SECONDS


# Re-exported: the signing and the client are the shared mechanism's (apps.runs.delivery).
callback_client = signed.delivery_client
sign = signed.sign
signing_key = signed.signing_key
retry_delay = signed.retry_delay


def validate_callbacks(callbacks: list[dict[str, Any]]) -> None:
    """At request time: HTTPS and a public address, unless ALLOW_PRIVATE_NETWORK_TARGETS (dev/tests).

    A refused target answers `target_not_allowed` with the guard's one message, whether the name did not
    resolve or resolved to a forbidden address: the caller (maybe anonymous) learns nothing about our DNS.
    """
    errors: dict[str, list[str]] = {}
    code = None
    for index, callback in enumerate(callbacks):
        try:
            check_url_target(callback["url"], allow_private=bool(settings.ALLOW_PRIVATE_NETWORK_TARGETS))
        except BlockedAddressError as exc:
            errors[f"callbacks[{index}].url"] = [str(exc)]
            code = exc.code
        except ValueError as exc:
            errors[f"callbacks[{index}].url"] = [str(exc)]
    if errors:
        raise BadRequest("Callback URLs must use HTTPS and resolve to public addresses.", details=errors, code=code)


def deliveries_create(*, run: Run, callbacks: list[dict[str, Any]]) -> list[CallbackDelivery]:
    return CallbackDelivery.objects.bulk_create(
        [
            CallbackDelivery(run=run, url=c["url"], auth=dict(c["auth"]) if c.get("auth") else None,
                             metadata=c.get("metadata"))
            for c in callbacks
        ]
    )


def callback_body(delivery: CallbackDelivery) -> str:
    run = delivery.run
    return json.dumps(
        {
            "id": str(run.id), "status": run.status, "output": run.output, "error": run.error,
            "metadata": delivery.metadata, "started_at": rfc3339(run.started_at), "ended_at": rfc3339(run.ended_at),
        },
        separators=(",", ":"),
    )


def deliver(delivery_id) -> float | None:
    """Make one attempt. Returns the delay before the next one, or None when the delivery is settled.

    The attempt is claimed by bumping `attempts` conditionally, so two workers never send the same attempt.
    """
    delivery = CallbackDelivery.objects.select_related("run__app").filter(id=delivery_id).first()
    if delivery is not None:
        log_context.bind(run_id=delivery.run_id, app_id=delivery.run.app_id, user_id=delivery.run.user_id)
    if delivery is None or delivery.status in (CallbackDelivery.Status.DELIVERED, CallbackDelivery.Status.DEAD):
        return None
    if not delivery.run.is_terminal:
        return None  # scheduled again when the run ends
    if signed.not_due(delivery):
        return None
    attempt = signed.claim(CallbackDelivery, delivery)
    if attempt is None:
        return None
    if not delivery.body:
        delivery.body = callback_body(delivery)
        CallbackDelivery.objects.filter(id=delivery.id).update(body=delivery.body)
    headers = {}
    if delivery.auth and delivery.auth.get("type") == "bearer":
        headers["Authorization"] = f"Bearer {delivery.auth['token']}"
    outcome = signed.post_signed(
        url=delivery.url, secret=delivery.run.app.callback_signing_secret or "", message_id=str(delivery.id),
        body=delivery.body.encode(), attempt=attempt, user_agent="runtime-connection-platform-callbacks/1",
        headers=headers,
    )
    delay = signed.record(CallbackDelivery, delivery.id, outcome, kind="callback")
    logger.info("callback %s attempt %s: %s", delivery.id, attempt, outcome.status)
    return delay


@job("runs.deliver_callback")
def deliver_callback(delivery_id: str) -> str:
    """The background job of one delivery (thread pool or Celery task): one attempt, and the next one
    queued after its delay."""
    delay = deliver(delivery_id)
    if delay is not None:
        submit(deliver_callback, delivery_id, delay=delay)
    return "retrying" if delay is not None else "settled"


def due_deliveries() -> list[tuple[str, float]]:
    """Deliveries still owed (after a restart): (id, seconds until due)."""
    now = timezone.now()
    rows = CallbackDelivery.objects.filter(
        status__in=[CallbackDelivery.Status.PENDING, CallbackDelivery.Status.RETRYING],
        run__status__in=Run.TERMINAL,
    ).values_list("id", "next_attempt_at")
    return [(str(i), max(0.0, (at - now).total_seconds()) if at else 0.0) for i, at in rows]
