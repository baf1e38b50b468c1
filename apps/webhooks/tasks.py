"""Celery task of the `celery` executor for webhook deliveries: a shell around the job, named after it (the
executor sends it by name; Celery's autodiscovery imports this module in a worker). Same acknowledgement
policy as apps.runs.tasks: the attempt claim makes a redelivered message harmless."""

from __future__ import annotations

from celery import shared_task

from .jobs import deliver_webhook


@shared_task(name=deliver_webhook.name, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_webhook_task(delivery_id: str) -> str:
    return deliver_webhook(delivery_id)
