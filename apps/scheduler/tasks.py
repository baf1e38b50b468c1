"""The Celery side of the scheduler: beat sends `scheduler.run_job(name)` every period (config/celery.py,
from apps.scheduler.registry); a worker runs it through the same lease as the scheduler thread, so a second
beat, or a message redelivered after a worker died, runs nothing twice in a period."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from .registry import TASK_NAME
from .services import job_run_if_due


@shared_task(name=TASK_NAME, ignore_result=True)
def run_job_task(name: str) -> dict[str, Any]:
    ran, result = job_run_if_due(name)
    return {"job": name, "ran": ran, "result": result}
