"""Retention of the credential-access audit (SPEC §15): rows older than RETENTION_AUDIT_DAYS are deleted in
bounded batches (apps.core.retention). Kept longer than runs by default (docs/decisions.md "Retention"): an
audit is read when something went wrong, often well after the runs it explains."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from apps.core.retention import delete_in_batches, retention_cutoff

from .models import CredentialAccess


def credential_access_purge_expired(*, now: datetime | None = None, dry_run: bool = False) -> dict[str, int]:
    """Delete audit rows older than the retention period; `dry_run` only counts them. Returns {"audit"}."""
    cutoff = retention_cutoff(settings.RETENTION_AUDIT_DAYS, now=now)
    if cutoff is None:
        return {"audit": 0}
    rows = CredentialAccess.objects.filter(created_at__lt=cutoff).order_by("created_at")
    if dry_run:
        return {"audit": rows.count()}
    return {"audit": delete_in_batches(rows).get(CredentialAccess._meta.label, 0)}
