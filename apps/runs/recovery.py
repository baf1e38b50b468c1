"""Recovering background work after a crash: runs left `created` (accepted while the broker was
unreachable, or queued in a process that died) or `started` by a process that died (stale heartbeat), and
callback deliveries still owed. Queued again on the executor (apps.runs.dispatch); the claim
(apps.runs.lifecycle) decides whether a `started` run's lease has lapsed.

When: thread executor, on a server process's first request (`install_recovery_on_start`, from
RunsConfig.ready); Celery, when a worker is ready (config/celery.py); `manage.py recover_runs`; and every
RUNS_RECOVERY_SWEEP_SECONDS by the scheduler (`recover_sweep`, apps.scheduler), for work lost while every
process kept running (a message the broker never got, a worker that died while its peers lived on).
"""

from __future__ import annotations

import logging
import sys
import threading
from datetime import timedelta

from django.conf import settings
from django.core.signals import request_started
from django.db import close_old_connections, connection
from django.db.models import Q
from django.utils import timezone

from apps.core.processes import is_server_command

from .callbacks import deliver_callback, due_deliveries
from .dispatch import get_executor, submit
from .lifecycle import execute_run_job
from .models import CallbackDelivery, Run

logger = logging.getLogger(__name__)


def pending_runs(*, created_before=None, include_started: bool = True) -> list[str]:
    """Runs that should be executing: `created`, or `started` (the claim decides whether their lease lapsed)."""
    statuses = [Run.Status.CREATED, Run.Status.STARTED] if include_started else [Run.Status.CREATED]
    queryset = Run.objects.filter(status__in=statuses).exclude(mode__in=[Run.Mode.SYNC])
    if created_before is not None:
        queryset = queryset.filter(created_at__lt=created_before)
    return [str(i) for i in queryset.order_by("created_at").values_list("id", flat=True)]


def recover(*, created_before=None, include_started: bool = True) -> dict[str, int]:
    """Queue every pending run and every callback delivery still owed. Safe to call any number of times
    from any number of processes: claims are atomic, and a run another live process is executing is only
    taken over once its heartbeat is older than the lease."""
    runs = pending_runs(created_before=created_before, include_started=include_started)
    for run_id in runs:
        submit(execute_run_job, run_id)
    deliveries = due_deliveries()
    for delivery_id, delay in deliveries:
        submit(deliver_callback, delivery_id, delay=delay)
    if runs or deliveries:
        logger.info("recovery at %s: %s run(s), %s callback(s) queued", timezone.now().isoformat(), len(runs),
                    len(deliveries))
    return {"runs": len(runs), "callbacks": len(deliveries)}


def recover_sweep(*, now=None) -> dict[str, int]:
    """The periodic sweep (a scheduler job): queue again only what is overdue beyond doubt, so that work
    still queued or executing normally is not queued twice every sweep: runs `created` more than a sweep
    period ago (and at least a lease), runs `started` whose heartbeat is older than the lease (their
    process died: the claim takes them over), and callback deliveries due more than a sweep period ago."""
    now = now or timezone.now()
    lease = timedelta(seconds=float(settings.RUNS_LEASE_SECONDS))
    grace = max(lease, timedelta(seconds=float(settings.RUNS_RECOVERY_SWEEP_SECONDS)))
    lost = Q(status=Run.Status.CREATED, created_at__lt=now - grace)
    orphaned = Q(status=Run.Status.STARTED) & (Q(heartbeat_at__lt=now - lease) | Q(heartbeat_at__isnull=True))
    overdue_runs = Run.objects.exclude(mode=Run.Mode.SYNC).filter(lost | orphaned).order_by("created_at")
    runs = [str(i) for i in overdue_runs.values_list("id", flat=True)]
    overdue = CallbackDelivery.objects.filter(
        status__in=[CallbackDelivery.Status.PENDING, CallbackDelivery.Status.RETRYING], run__status__in=Run.TERMINAL,
    ).filter(Q(next_attempt_at__lt=now - grace) | Q(next_attempt_at__isnull=True, run__ended_at__lt=now - grace))
    deliveries = [str(i) for i in overdue.values_list("id", flat=True)]
    for run_id in runs:
        submit(execute_run_job, run_id)
    for delivery_id in deliveries:
        submit(deliver_callback, delivery_id)
    if runs or deliveries:
        logger.warning("recovery sweep: %s run(s), %s callback(s) were overdue and are queued again", len(runs),
                       len(deliveries))
    return {"runs": len(runs), "callbacks": len(deliveries)}


def is_server_process(argv: list[str]) -> bool:
    """Whether this process serves HTTP and should recover runs at start.

    Explicit RUNS_RECOVER_ON_START wins. Otherwise: `manage.py runserver` (in the autoreloader's child,
    which serves; the watcher parent never handles a request anyway) and gunicorn. Never during
    migrate, tests, shell or any other management command: recovering there would execute runs inside
    a process that is about to exit, or against a test database.
    """
    override = settings.RUNS_RECOVER_ON_START
    if override is not None:
        return bool(override)
    return is_server_command(argv)


def install_recovery_on_start() -> None:
    """Thread executor: recover once per server process, on its first request.

    Why the first request and not AppConfig.ready(): ready() runs before the database may be queried
    (Django warns), and with `gunicorn --preload` it runs in the master before the workers fork, where
    the pool's threads would not survive. The first request runs in the process that will execute the
    runs. The recovery itself runs in the pool, so that request is not delayed.
    """
    if settings.RUNS_EXECUTOR != "thread" or not is_server_process(sys.argv):
        return
    done = threading.Event()

    def on_first_request(**kwargs) -> None:
        if done.is_set():
            return
        done.set()
        request_started.disconnect(on_first_request, dispatch_uid="runs-recover-on-start")
        get_executor().pool.submit(_recover_in_pool)

    request_started.connect(on_first_request, dispatch_uid="runs-recover-on-start", weak=False)


def _recover_in_pool() -> None:
    try:
        recover()
    except Exception:
        logger.exception("run recovery failed")
    finally:
        close_old_connections()
        connection.close()
