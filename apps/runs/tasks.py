"""Celery tasks of the `celery` executor: one per background job, named after it, and only a shell around
it: the job itself (what to do, and when to look again) is the same function the thread executor runs.

The executor sends these tasks by name (apps.runs.dispatch), so nothing imports this module but Celery's
autodiscovery in a worker.

`acks_late` + `reject_on_worker_lost`: the message is acknowledged only after the task returns, and a
worker process that dies mid-task puts it back on the queue, so a killed worker's run is redone. The
claim in apps.runs.lifecycle makes the redo end the run exactly once.
"""

from __future__ import annotations

from celery import shared_task

from .callbacks import deliver_callback
from .lifecycle import execute_run_job


@shared_task(name=execute_run_job.name, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_run_task(run_id: str) -> str:
    return execute_run_job(run_id)


@shared_task(name=deliver_callback.name, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_callback_task(delivery_id: str) -> str:
    return deliver_callback(delivery_id)
