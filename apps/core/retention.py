"""Retention helpers (SPEC §15 "Retention"): the cut-off of a period in days, and deleting old rows a bounded
batch at a time. Each app's `retention.py` says what is old; the scheduler (apps.scheduler) says when.

Why batches: one DELETE of a month of runs would hold its locks (SQLite: the whole database's write lock)
for as long as it takes, stalling every run that wants to write meanwhile. A batch is one short transaction
of at most RETENTION_BATCH_SIZE primary keys; at most RETENTION_MAX_BATCHES run per job run, and the next
run of the job goes on where this one stopped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone


def retention_cutoff(days: float, *, now: datetime | None = None) -> datetime | None:
    """The moment before which rows are old, or None when `days` is 0 (keep forever)."""
    if not days or days <= 0:
        return None
    return (now or timezone.now()) - timedelta(days=days)


def delete_in_batches(
    queryset: QuerySet,
    *,
    delete: Callable[[list], dict[str, int]] | None = None,
    batch_size: int | None = None,
    max_batches: int | None = None,
) -> Counter:
    """Delete the rows of `queryset`, oldest first (its ordering), a batch of primary keys at a time, each
    batch in its own transaction. `delete(pks)` deletes one batch and returns counts by model label (it then
    opens its own transactions); by default the queryset's model by primary key, with Django's cascades.
    Returns the counts by label.

    Stops at the first short batch, or after `max_batches` (the rest waits for the next run)."""
    batch_size = batch_size or settings.RETENTION_BATCH_SIZE
    max_batches = max_batches or settings.RETENTION_MAX_BATCHES
    model = queryset.model
    totals: Counter = Counter()
    for _ in range(max_batches):
        pks = list(queryset.values_list("pk", flat=True)[:batch_size])
        if not pks:
            break
        if delete is None:
            with transaction.atomic():
                totals.update(model.objects.filter(pk__in=pks).delete()[1])
        else:
            totals.update(delete(pks))
        if len(pks) < batch_size:
            break
    return totals
