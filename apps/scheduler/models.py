from __future__ import annotations

from django.db import models
from django.db.models import Q


class ScheduledJob(models.Model):
    """One periodic job's schedule and lease, shared by every process that could run it (web processes with
    their scheduler thread, Celery workers fed by beat, a second beat by mistake).

    A process runs the job only after winning one conditional UPDATE: due (`next_run_at` reached) and not
    leased (`leased_until` empty or past). The same UPDATE moves `next_run_at` one period on and takes the
    lease, so however many processes race, one runs it per period; a process that dies mid-job holds the
    lease only until `leased_until`. Works alike on SQLite and PostgreSQL; no Redis.
    """

    class Outcome(models.TextChoices):
        OK = "ok", "OK"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=100, primary_key=True)
    next_run_at = models.DateTimeField()
    leased_until = models.DateTimeField(null=True, blank=True)
    # Who holds the lease (a random token per attempt): only the holder's release clears it.
    lease_owner = models.CharField(max_length=64, blank=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True)
    # What the job returned (counts), or the error's class. Never a secret: jobs return counts.
    last_result = models.JSONField(null=True, blank=True)
    runs = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(last_outcome__in=["", "ok", "failed"]), name="scheduledjob_outcome_valid"),
        ]

    def __str__(self) -> str:
        return self.name
