"""Retention of the proxy's audit rows (SPEC §15): older than RETENTION_AUDIT_DAYS, like the credential-access
audit they sit beside, deleted in bounded batches (apps.core.retention) by the scheduler's job."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from apps.core.retention import delete_in_batches, retention_cutoff

from .models import ProxyCall


def proxy_calls_purge_expired(*, now: datetime | None = None, dry_run: bool = False) -> dict[str, int]:
    """Delete ProxyCall rows older than the retention period; `dry_run` only counts them. Returns {"proxy_calls"}."""
    cutoff = retention_cutoff(settings.RETENTION_AUDIT_DAYS, now=now)
    if cutoff is None:
        return {"proxy_calls": 0}
    rows = ProxyCall.objects.filter(created_at__lt=cutoff).order_by("created_at")
    if dry_run:
        return {"proxy_calls": rows.count()}
    return {"proxy_calls": delete_in_batches(rows).get(ProxyCall._meta.label, 0)}
