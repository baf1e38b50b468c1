"""Celery tasks of the `celery` runs executor: thin, they take an ID and call the worker service.

`acks_late` + `reject_on_worker_lost`: the message is acknowledged only after the task returns, and a
worker process that dies mid-task puts it back on the queue, so a killed worker's run is redone. The
claim in apps.runs.worker makes the redo end the run exactly once.
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="runs.execute_run", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_run_task(run_id: str) -> str:
    from .executors import get_executor
    from .worker import Outcome, lease_seconds, process_run

    outcome = process_run(run_id)
    if outcome is Outcome.BUSY:  # a redelivered message while the run's lease is still fresh: look again later
        get_executor().submit_run(run_id, delay=lease_seconds())
    return outcome.value


@shared_task(name="runs.deliver_callback", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_callback_task(delivery_id: str) -> str:
    from .callbacks import deliver
    from .executors import get_executor

    delay = deliver(delivery_id)
    if delay is not None:
        get_executor().submit_delivery(delivery_id, delay=delay)
    return "retrying" if delay is not None else "settled"
