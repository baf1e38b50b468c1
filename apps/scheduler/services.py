"""The lease that makes a periodic job run once per period across processes (apps.scheduler.models).

`job_run_if_due(job)` is what every trigger calls (the scheduler thread's tick, the Celery task beat sends):
claim with one conditional UPDATE, run, release. Losing the claim is normal (another process won, or it is
not due yet) and costs one statement.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F, Q
from django.utils import timezone

from .models import ScheduledJob
from .registry import BY_NAME, JOBS, PeriodicJob

logger = logging.getLogger(__name__)


def job_claim(*, job: PeriodicJob, now: datetime | None = None) -> str | None:
    """Take the job's lease if it is due and free: returns the lease token, or None. One conditional UPDATE
    (compare-and-set on next_run_at and leased_until), which also moves next_run_at one period on; the row is
    inserted the first time (due at once)."""
    now = now or timezone.now()
    token = secrets.token_hex(16)
    claim = ScheduledJob.objects.filter(name=job.name, next_run_at__lte=now + job.slack).filter(
        Q(leased_until__isnull=True) | Q(leased_until__lte=now)
    )
    changes = {"next_run_at": now + job.every, "leased_until": now + timedelta(seconds=job.lease_seconds), "lease_owner": token,
               "last_started_at": now, "runs": F("runs") + 1}
    if claim.update(**changes):
        return token
    if not ScheduledJob.objects.filter(name=job.name).exists():
        ScheduledJob.objects.bulk_create([ScheduledJob(name=job.name, next_run_at=now)], ignore_conflicts=True)
        if claim.update(**changes):
            return token
    return None


def job_release(*, job: PeriodicJob, token: str, outcome: str, result: Any) -> None:
    """End the lease taken with `token` (only that one: a lease that lapsed and was taken again stays)."""
    ScheduledJob.objects.filter(name=job.name, lease_owner=token).update(
        leased_until=None, lease_owner="", last_finished_at=timezone.now(), last_outcome=outcome, last_result=result,
    )


def job_run_if_due(job: PeriodicJob | str, *, now: datetime | None = None) -> tuple[bool, Any]:
    """Run `job` if this process wins its lease for the current period. Returns (ran, result). The job's
    exception is logged and recorded, not raised: the next period tries again."""
    job = BY_NAME[job] if isinstance(job, str) else job
    token = job_claim(job=job, now=now)
    if token is None:
        return False, None
    try:
        result = job.resolve()()
    except Exception as exc:
        # The row keeps the error's class only: a message may quote what a job handled (an upstream's answer to
        # a token refresh, SPEC §13), and the admin shows this row. The log has the traceback (redacted).
        logger.exception("scheduled job %s failed", job.name)
        job_release(job=job, token=token, outcome=ScheduledJob.Outcome.FAILED, result={"error": type(exc).__name__})
        return True, None
    job_release(job=job, token=token, outcome=ScheduledJob.Outcome.OK, result=result)
    if isinstance(result, dict) and any(result.values()):
        logger.info("scheduled job %s: %s", job.name, result)
    return True, result


def due_jobs(*, jobs: Sequence[PeriodicJob] = JOBS, now: datetime | None = None) -> list[PeriodicJob]:
    """Jobs that may be claimable now (one SELECT): a job with no row yet, or due and not leased. The claim
    decides; this only spares an idle tick an UPDATE per job."""
    now = now or timezone.now()
    rows = {row.name: row for row in ScheduledJob.objects.filter(name__in=[job.name for job in jobs])}
    due = []
    for job in jobs:
        row = rows.get(job.name)
        if row is None or (row.next_run_at <= now + job.slack and (row.leased_until is None or row.leased_until <= now)):
            due.append(job)
    return due
