"""Signed deliveries: the one mechanism behind run callbacks (apps.runs.callbacks) and connection webhooks
(apps.webhooks). A caller supplies its row, the URL, the secret and the body; this module claims the attempt,
signs and POSTs it, classifies the answer and writes the next state on the row.

Signature (Standard Webhooks): `webhook-id` (the caller's message ID, the same on every retry), `webhook-timestamp`
(Unix seconds of this attempt), `webhook-signature` = `v1,` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")),
the key being the base64-decoded part of the `whsec_...` secret, so the reference libraries verify it.

Classification: 2xx is `delivered`. Network errors (incl. a name that does not resolve), 429 and 5xx are retried
after CALLBACK_RETRY_BASE_SECONDS, doubling, CALLBACK_MAX_ATTEMPTS attempts in all, then `dead`. Any other answer
(3xx: redirects are never followed; 4xx but 429) is `dead` at once, and so is a target that now resolves to a
non-public address (the SSRF guard refused it before any packet was sent).

The row's model needs the fields `status` (pending/retrying/delivered/dead), `attempts`, `last_status_code`,
`last_error`, `last_attempt_at`, `next_attempt_at`, `delivered_at`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db import models
from django.db.models import F
from django.utils import timezone

from apps.core import metrics
from apps.engine import BlockedAddressError

from .http import guarded_client

SECRET_PREFIX = "whsec_"
TIMEOUT_SECONDS = 10.0
PENDING, RETRYING, DELIVERED, DEAD = "pending", "retrying", "delivered", "dead"
OWED = (PENDING, RETRYING)


def delivery_client() -> httpx.Client:
    """SSRF-guarded (the address is checked again when connecting, and connected to as checked), no redirects."""
    return guarded_client(follow_redirects=False, timeout=TIMEOUT_SECONDS)


def signing_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(signing_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def retry_delay(attempts: int) -> float:
    """Delay before the attempt after attempt number `attempts` (1-based): base, 2*base, 4*base..."""
    return float(settings.CALLBACK_RETRY_BASE_SECONDS) * (2 ** (attempts - 1))


def not_due(row: Any) -> bool:
    """A duplicate message (recovery, a sweep) for an attempt scheduled later: the scheduled one will make it."""
    return bool(row.next_attempt_at and row.next_attempt_at - timezone.now() > timedelta(seconds=0.5))


def claim(model: type[models.Model], row: Any) -> int | None:
    """Claim the next attempt by bumping `attempts` conditionally, so two workers never send the same attempt.
    Returns the attempt number (1-based), or None when another worker took it or the row is settled."""
    claimed = model.objects.filter(id=row.id, attempts=row.attempts, status__in=OWED).update(
        attempts=F("attempts") + 1, last_attempt_at=timezone.now()
    )
    return row.attempts + 1 if claimed else None


@dataclass(frozen=True)
class Outcome:
    status: str  # delivered | retrying | dead
    status_code: int | None
    error: str
    delay: float | None  # seconds until the next attempt (retrying only)


def post_signed(
    *, url: str, secret: str, message_id: str, body: bytes, attempt: int, user_agent: str,
    headers: dict[str, str] | None = None,
) -> Outcome:
    """One signed POST and what it means for the delivery: delivered, retrying (with the delay) or dead."""
    timestamp = int(time.time())
    sent_headers = {
        "Content-Type": "application/json",
        "User-Agent": user_agent,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret=secret, message_id=message_id, timestamp=timestamp, body=body),
        **(headers or {}),
    }
    status_code: int | None = None
    error = ""
    retryable = False
    try:
        # Streamed, and closed unread: only the status matters, and a receiver's body (any size) is never loaded.
        with delivery_client().stream("POST", url, content=body, headers=sent_headers) as response:
            status_code = response.status_code
        if not response.is_success:
            error = f"HTTP {status_code}"
            retryable = status_code == 429 or status_code >= 500
    except BlockedAddressError as exc:
        error = f"{exc.code}: {exc}"[:500]
        retryable = not exc.address  # a name that did not resolve may resolve later; a private address will not
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        retryable = True
    if status_code is not None and 200 <= status_code < 300:
        return Outcome(DELIVERED, status_code, "", None)
    if retryable and attempt < int(settings.CALLBACK_MAX_ATTEMPTS):
        return Outcome(RETRYING, status_code, error, retry_delay(attempt))
    return Outcome(DEAD, status_code, error, None)


def record(model: type[models.Model], row_id: Any, outcome: Outcome, *, kind: str) -> float | None:
    """Write the outcome on the row (and count it). Returns the delay before the next attempt, or None."""
    now = timezone.now()
    fields: dict[str, Any] = {"status": outcome.status, "last_status_code": outcome.status_code,
                              "last_error": outcome.error}
    if outcome.status == DELIVERED:
        fields.update(delivered_at=now, next_attempt_at=None)
    elif outcome.status == RETRYING:
        fields.update(next_attempt_at=now + timedelta(seconds=outcome.delay or 0))
    else:
        fields.update(next_attempt_at=None)
    model.objects.filter(id=row_id).update(**fields)
    metrics.delivery(kind=kind, outcome=outcome.status)
    return outcome.delay
