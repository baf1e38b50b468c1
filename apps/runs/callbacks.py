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

Each delivery is the background job `deliver_callback` (apps.runs.dispatch), queued when its run ends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from apps.core import log_context, metrics
from apps.core.errors import BadRequest
from apps.core.formats import rfc3339
from apps.engine import BlockedAddressError, check_url_target

from .dispatch import job, submit
from .http import guarded_client
from .models import CallbackDelivery, Run

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
TIMEOUT_SECONDS = 10.0


def callback_client() -> httpx.Client:
    """SSRF-guarded (the address is checked again when connecting, and connected to as checked), no redirects."""
    return guarded_client(follow_redirects=False, timeout=TIMEOUT_SECONDS)


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


def signing_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(signing_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def callback_body(delivery: CallbackDelivery) -> str:
    run = delivery.run
    return json.dumps(
        {
            "id": str(run.id), "status": run.status, "output": run.output, "error": run.error,
            "metadata": delivery.metadata, "started_at": rfc3339(run.started_at), "ended_at": rfc3339(run.ended_at),
        },
        separators=(",", ":"),
    )


def retry_delay(attempts: int) -> float:
    """Delay before the attempt after attempt number `attempts` (1-based): base, 2*base, 4*base..."""
    return float(settings.CALLBACK_RETRY_BASE_SECONDS) * (2 ** (attempts - 1))


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
    if delivery.next_attempt_at and delivery.next_attempt_at - timezone.now() > timedelta(seconds=0.5):
        return None  # not due: a duplicate message (recovery); the scheduled one will make this attempt
    attempt = delivery.attempts + 1
    claimed = CallbackDelivery.objects.filter(
        id=delivery.id, attempts=delivery.attempts, status__in=[CallbackDelivery.Status.PENDING, CallbackDelivery.Status.RETRYING]
    ).update(attempts=F("attempts") + 1, last_attempt_at=timezone.now())
    if not claimed:
        return None
    if not delivery.body:
        delivery.body = callback_body(delivery)
        CallbackDelivery.objects.filter(id=delivery.id).update(body=delivery.body)
    body = delivery.body.encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "runtime-connection-platform-callbacks/1",
        "webhook-id": str(delivery.id),
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret=delivery.run.app.callback_signing_secret or "", message_id=str(delivery.id),
                                  timestamp=timestamp, body=body),
    }
    if delivery.auth and delivery.auth.get("type") == "bearer":
        headers["Authorization"] = f"Bearer {delivery.auth['token']}"

    status_code: int | None = None
    error = ""
    retryable = False
    try:
        response = callback_client().post(delivery.url, content=body, headers=headers)
        status_code = response.status_code
        response.close()
        if not response.is_success:
            error = f"HTTP {status_code}"
            retryable = status_code == 429 or status_code >= 500
    except BlockedAddressError as exc:
        error = f"{exc.code}: {exc}"[:500]
        retryable = not exc.address  # a name that did not resolve may resolve later; a private address will not
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        retryable = True

    now = timezone.now()
    fields: dict[str, Any] = {"last_status_code": status_code, "last_error": error}
    delay: float | None = None
    if status_code is not None and 200 <= status_code < 300:
        fields.update(status=CallbackDelivery.Status.DELIVERED, delivered_at=now, next_attempt_at=None, last_error="")
    elif retryable and attempt < int(settings.CALLBACK_MAX_ATTEMPTS):
        delay = retry_delay(attempt)
        fields.update(status=CallbackDelivery.Status.RETRYING, next_attempt_at=now + timedelta(seconds=delay))
    else:
        fields.update(status=CallbackDelivery.Status.DEAD, next_attempt_at=None)
    CallbackDelivery.objects.filter(id=delivery.id).update(**fields)
    metrics.delivery(kind="callback", outcome=fields["status"])
    logger.info("callback %s attempt %s: %s", delivery.id, attempt, fields["status"])
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
