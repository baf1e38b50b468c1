"""Celery application for the `celery` runs executor: `celery -A config worker`.

Settings come from Django settings (CELERY_*): Redis broker (CELERY_BROKER_URL), late ack, reject on
worker lost, prefetch 1, JSON only, and CELERY_BROKER_TRANSPORT_OPTIONS' visibility timeout (how long
Redis waits before redelivering the message of a worker that vanished).
"""

import logging
import os
from datetime import timedelta

from celery import Celery
from celery.signals import (
    before_task_publish,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_ready,
)
from django.conf import settings
from django.utils import timezone

from apps.core import log_context  # standard library only: safe before Django's app registry is ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

logger = logging.getLogger(__name__)

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# A task logs with the log context of the code that queued it (SPEC §15: a background run's lines carry the
# request_id of the request that accepted it), sent as a message header (log_context.HEADER): a worker of an
# older release ignores a header it does not know, where an unexpected task argument would fail the task.
# The runs executor publishes its own messages and adds the header itself (apps.runs.dispatch); this
# receiver covers what is sent through Celery's `send_task`/`apply_async`.


@before_task_publish.connect
def _send_log_context(headers=None, **kwargs):
    fields = log_context.current()
    if fields and headers is not None:
        headers.setdefault(log_context.HEADER, dict(fields))


@task_prerun.connect
def _start_task_log_context(task=None, **kwargs):
    fields = getattr(task.request, log_context.HEADER, None) if task is not None else None
    if not isinstance(fields, dict):
        fields = {}
    log_context.start({name: str(fields[name]) for name in log_context.FIELDS if fields.get(name)})


@task_postrun.connect
def _end_task_log_context(**kwargs):
    log_context.clear()


@setup_logging.connect
def _use_django_logging(**kwargs):
    """Workers log through settings.LOGGING (JSON lines in production, with the log context and redaction),
    not Celery's own format: a receiver of this signal makes Celery leave logging alone. Django configured it
    already (django.setup() in the worker); applying it again here keeps it right whichever runs first."""
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)


@app.on_after_configure.connect
def _schedule_periodic_jobs(sender, **kwargs):
    """Beat's schedule is the scheduler's registry (apps/scheduler/registry.py): one `scheduler.run_job` per job
    and period. Built when the configuration is first read (settings are loaded by then); the registry imports
    no model, so this is safe before Django's apps are ready."""
    from apps.scheduler.registry import beat_schedule

    sender.conf.beat_schedule = beat_schedule()


@worker_process_init.connect
def _mark_worker_process(**kwargs):
    # Imported when the worker starts, not at the top: this module is loaded with the settings
    # (config/__init__.py), before the apps it would import exist.
    from apps.runs.dispatch import mark_celery_worker

    mark_celery_worker()


@worker_ready.connect
def _recover_lost_runs(**kwargs):
    """Runs accepted while the broker was unreachable stay `created` with no message: queue them again.
    Only runs older than the lease (a fresh one's message is most likely still in the queue; a duplicate
    would be harmless anyway: the claim is atomic). Messages of runs a dead worker had started come back
    from the broker itself (late ack)."""
    # Imported when the worker is ready, not at the top: recovery imports models, and this module is
    # loaded with the settings (config/__init__.py), before Django's app registry is ready.
    from apps.runs.dispatch import mark_celery_worker
    from apps.runs.recovery import recover

    mark_celery_worker()
    try:
        recover(created_before=timezone.now() - timedelta(seconds=settings.RUNS_LEASE_SECONDS), include_started=False)
    except Exception:  # the worker must start even if the database is briefly unavailable
        logger.exception("run recovery at worker start failed")


@worker_init.connect
def _serve_worker_metrics(**kwargs):
    """With WORKER_METRICS_BIND: this worker's runs, node failures, queue lag, resolutions, refreshes and
    callbacks (counted in its pool processes) at `http://<bind>/metrics` (README "Metrics"). Before the pool
    starts, so its directory is emptied before any child writes there."""
    if settings.WORKER_METRICS_BIND:
        from apps.core.metrics_http import serve_worker_metrics

        serve_worker_metrics(settings.WORKER_METRICS_BIND)
