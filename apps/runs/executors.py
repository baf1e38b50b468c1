"""Where background and async runs (and callback deliveries) execute: `RUNS_EXECUTOR`.

- `thread` (default, one machine): a ThreadPoolExecutor of RUNS_THREAD_WORKERS threads in each web
  process. Runs are persisted (`created`, event `run.created`) before they are queued, and queued by
  `transaction.on_commit`, so a crash loses no accepted run: runs left `created`, or `started` by a
  process that died (stale heartbeat), are picked up again when a server process starts (see
  `install_recovery_on_start`) or by `manage.py recover_runs`. Delayed work (callback retries, a run
  still leased by a dead process) waits on a `threading.Timer`, then goes to the pool.
- `celery` (many machines): `celery -A config worker`; the task only carries the run ID (apps.runs.tasks).
  Late ack + reject-on-worker-lost: a killed worker's message is redelivered and the run redone; the
  claim (apps.runs.worker) makes sure it still ends exactly once. Delays use `apply_async(countdown=...)`.

Either way the execution itself is `apps.runs.worker.process_run(run_id)`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from .models import Run

logger = logging.getLogger(__name__)


class ThreadExecutor:
    name = "thread"

    def __init__(self, workers: int):
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="runs")

    def submit_run(self, run_id, *, delay: float = 0.0) -> None:
        self._submit(self._run, str(run_id), delay)

    def submit_delivery(self, delivery_id, *, delay: float = 0.0) -> None:
        self._submit(self._deliver, str(delivery_id), delay)

    def _submit(self, job, arg: str, delay: float) -> None:
        if delay > 0:
            timer = threading.Timer(delay, self._submit, args=(job, arg, 0.0))
            timer.daemon = True
            timer.start()
            return
        try:
            self.pool.submit(job, arg)
        except RuntimeError:  # interpreter shutting down: the run stays persisted and is recovered later
            logger.warning("runs pool is shut down; %s left for recovery", arg)

    def _run(self, run_id: str) -> None:
        from .worker import Outcome, lease_seconds, process_run

        try:
            if process_run(run_id) is Outcome.BUSY:
                self.submit_run(run_id, delay=lease_seconds())
        except Exception:
            logger.exception("run %s: executor job failed", run_id)
        finally:
            connection.close()  # pool threads are long-lived: never keep a connection between jobs

    def _deliver(self, delivery_id: str) -> None:
        from .callbacks import deliver

        try:
            delay = deliver(delivery_id)
            if delay is not None:
                self.submit_delivery(delivery_id, delay=delay)
        except Exception:
            logger.exception("callback %s: delivery job failed", delivery_id)
        finally:
            connection.close()

    def shutdown(self, wait: bool = True) -> None:
        self.pool.shutdown(wait=wait)


class CeleryExecutor:
    name = "celery"

    def submit_run(self, run_id, *, delay: float = 0.0) -> None:
        from .tasks import execute_run_task

        execute_run_task.apply_async(args=[str(run_id)], countdown=delay or None)

    def submit_delivery(self, delivery_id, *, delay: float = 0.0) -> None:
        from .tasks import deliver_callback_task

        deliver_callback_task.apply_async(args=[str(delivery_id)], countdown=delay or None)


_executor: ThreadExecutor | CeleryExecutor | None = None
_executor_lock = threading.Lock()
_in_celery_worker = False


def mark_celery_worker() -> None:
    """A Celery worker process schedules its follow-up work (callbacks, retries) through Celery, whatever
    RUNS_EXECUTOR says (config/celery.py calls this on worker start)."""
    global _in_celery_worker, _executor
    _in_celery_worker = True
    _executor = None


def get_executor() -> ThreadExecutor | CeleryExecutor:
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = (
                    CeleryExecutor() if settings.RUNS_EXECUTOR == "celery" or _in_celery_worker
                    else ThreadExecutor(int(settings.RUNS_THREAD_WORKERS))
                )
    return _executor


def reset_executor() -> None:
    """Forget the executor (after fork: threads do not survive it; tests switching RUNS_EXECUTOR)."""
    global _executor
    _executor = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reset_executor)


def enqueue_run(run_id) -> None:
    """Called on commit of the transaction that created the run. A broker that cannot be reached leaves
    the run `created` for recovery instead of failing the request that already accepted it."""
    try:
        get_executor().submit_run(run_id)
    except Exception:
        logger.exception("could not enqueue run %s; it stays created until recovered", run_id)


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
    from .callbacks import due_deliveries

    executor = get_executor()
    runs = pending_runs(created_before=created_before, include_started=include_started)
    for run_id in runs:
        executor.submit_run(run_id)
    deliveries = due_deliveries()
    for delivery_id, delay in deliveries:
        executor.submit_delivery(delivery_id, delay=delay)
    if runs or deliveries:
        logger.info("recovery at %s: %s run(s), %s callback(s) queued", timezone.now().isoformat(), len(runs),
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
    if not argv:
        return False
    program = os.path.basename(argv[0])
    if argv[1:2] == ["runserver"] and program in ("manage.py", "django-admin", "__main__.py"):
        return True
    return program == "gunicorn" or argv[0].endswith(os.path.join("gunicorn", "__main__.py"))


def install_recovery_on_start() -> None:
    """Thread executor: recover once per server process, on its first request.

    Why the first request and not AppConfig.ready(): ready() runs before the database may be queried
    (Django warns), and with `gunicorn --preload` it runs in the master before the workers fork, where
    the pool's threads would not survive. The first request runs in the process that will execute the
    runs. The recovery itself runs in the pool, so that request is not delayed.
    """
    if settings.RUNS_EXECUTOR != "thread" or not is_server_process(sys.argv):
        return
    from django.core.signals import request_started

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
