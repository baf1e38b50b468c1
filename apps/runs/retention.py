"""Retention of runs (SPEC §15): runs that ended and were created more than RETENTION_RUNS_DAYS ago are
deleted with their events and callback deliveries, in bounded batches (apps.core.retention). A run still
`created` or `started` is never deleted, however old: it is work owed, and recovery may still pick it up.

Files are not deleted with their runs: a file may serve several runs; once no run references it, the files
job (apps.runs.files.files_purge_unreferenced) deletes it, bytes and row.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from django.conf import settings
from django.db import transaction

from apps.core.retention import delete_in_batches, retention_cutoff

from .models import CallbackDelivery, Run, RunEvent

_LABELS = {Run._meta.label: "runs", RunEvent._meta.label: "events", CallbackDelivery._meta.label: "callbacks"}


def expired_runs(*, now: datetime | None = None):
    """Ended runs created before the retention cut-off, oldest first (None: runs are kept forever)."""
    cutoff = retention_cutoff(settings.RETENTION_RUNS_DAYS, now=now)
    if cutoff is None:
        return None
    return Run.objects.filter(created_at__lt=cutoff, status__in=Run.TERMINAL).order_by("created_at")


def _delete_runs(pks: list) -> Counter:
    """One batch of runs. Their events first, a batch at a time (a run may have thousands: a streamed LLM
    answer), each in its own transaction: an ended run gains no events, and a crash in between leaves runs
    that the next pass deletes. Then the runs, with their callback deliveries (Django's cascade: one DELETE
    by run ID; `only("id")`: the runs' JSON is not read to be deleted). The status condition again in that
    DELETE: nothing moves a run out of a terminal status, but a deleted pending run would be work lost."""
    counts = delete_in_batches(RunEvent.objects.filter(run_id__in=pks).order_by())
    with transaction.atomic():
        counts.update(Run.objects.filter(pk__in=pks, status__in=Run.TERMINAL).only("id").delete()[1])
    return counts


def runs_purge_expired(*, now: datetime | None = None, dry_run: bool = False) -> dict[str, int]:
    """Delete expired runs with their events and callback deliveries; `dry_run` only counts them.
    Returns {"runs", "events", "callbacks"}."""
    runs = expired_runs(now=now)
    if runs is None:
        return dict.fromkeys(_LABELS.values(), 0)
    if dry_run:
        return {
            "runs": runs.count(),
            "events": RunEvent.objects.filter(run__in=runs.values("id")).count(),
            "callbacks": CallbackDelivery.objects.filter(run__in=runs.values("id")).count(),
        }
    deleted = delete_in_batches(runs, delete=_delete_runs)
    return {name: deleted.get(label, 0) for label, name in _LABELS.items()}
