"""Every periodic job of the platform, in one place (SPEC §13 "Scheduler": refresh, retention, webhook and
callback retries all go here). A job is a plain function called without arguments, returning counts (JSON);
its period is a setting. Who calls it: the scheduler thread of a web process (embedded default) or a Celery
worker, sent the task `scheduler.run_job` by beat (config/celery.py builds beat's schedule from this list);
either way through the lease in apps.scheduler.services, so one process runs it per period.

This module imports no model and no job: config/celery.py reads it while Django is still starting. Functions
are named by dotted path and imported when they run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

TASK_NAME = "scheduler.run_job"


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    function: str  # dotted path of a function taking no required argument
    every_setting: str  # the setting holding its period, in seconds
    lease_seconds: float = 15 * 60  # longest expected run; a process dying mid-job holds it this long at most
    retention: bool = False  # one of the purges `manage.py purge` runs by hand (accepting `dry_run`)

    @property
    def every(self) -> timedelta:
        return timedelta(seconds=float(getattr(settings, self.every_setting)))

    @property
    def slack(self) -> timedelta:
        """How early a run may start: beat's message for the next period, or a scheduler thread's tick, lands a
        little before `next_run_at` (it was set from the claim's clock, a moment after the period began);
        without slack it would be skipped and the job would run every other period."""
        return min(self.every / 10, timedelta(seconds=60))

    def resolve(self) -> Callable[..., Any]:
        return import_string(self.function)


# Order matters where one job frees what the next deletes: runs go before the files only they referenced.
JOBS: tuple[PeriodicJob, ...] = (
    PeriodicJob("runs.recovery_sweep", "apps.runs.recovery.recover_sweep", "RUNS_RECOVERY_SWEEP_SECONDS"),
    PeriodicJob("webhooks.retry_sweep", "apps.webhooks.jobs.retry_sweep", "WEBHOOK_RETRY_SWEEP_SECONDS"),
    PeriodicJob("connections.refresh_due", "apps.connections.oauth_flows.refresh_due", "OAUTH_REFRESH_EVERY_SECONDS"),
    PeriodicJob("connect.verification_sweep", "apps.connect.verification.flows_sweep", "CONNECT_VERIFY_SWEEP_SECONDS"),
    PeriodicJob("retention.runs", "apps.runs.retention.runs_purge_expired", "RETENTION_EVERY_SECONDS", retention=True),
    PeriodicJob("retention.files", "apps.runs.files.files_purge_expired", "RETENTION_EVERY_SECONDS", retention=True),
    PeriodicJob("retention.credential_access", "apps.credentials.retention.credential_access_purge_expired",
                "RETENTION_EVERY_SECONDS", retention=True),
    PeriodicJob("retention.connect_tokens", "apps.connect.retention.used_connect_tokens_purge_expired",
                "RETENTION_EVERY_SECONDS", retention=True),
    PeriodicJob("retention.proxy_calls", "apps.proxy.retention.proxy_calls_purge_expired", "RETENTION_EVERY_SECONDS",
                retention=True),
)

BY_NAME = {job.name: job for job in JOBS}


def beat_schedule() -> dict[str, dict[str, Any]]:
    """Celery beat's schedule: one entry per job, sending `scheduler.run_job(name)` every period."""
    return {
        # expires: a message not taken within its period (workers were down) is dropped, not piled up.
        job.name: {"task": TASK_NAME, "schedule": job.every, "args": (job.name,),
                   "options": {"expires": job.every.total_seconds()}}
        for job in JOBS
    }
