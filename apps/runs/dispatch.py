"""Where background work executes: `RUNS_EXECUTOR`. This module knows how to run a `Job` somewhere, not
what any job does, so everything that queues work (the run services, the run lifecycle, callbacks,
recovery) imports it and it imports none of them.

- `thread` (default, one machine): a ThreadPoolExecutor of RUNS_THREAD_WORKERS threads in each web
  process. Runs are persisted (`created`, event `run.created`) before they are queued, and queued by
  `transaction.on_commit`, so a crash loses no accepted run: runs left `created`, or `started` by a
  process that died (stale heartbeat), are picked up again when a server process starts
  (apps.runs.recovery) or by `manage.py recover_runs`. Delayed work (callback retries, a run still
  leased by a dead process) waits on a `threading.Timer`, then goes to the pool.
- `celery` (many machines): `celery -A config worker`. The message names the job's task and carries
  one ID (sent by name: this module does not import apps.runs.tasks, which imports the jobs). Late ack +
  reject-on-worker-lost: a killed worker's message is redelivered and the run redone; the claim
  (apps.runs.lifecycle) makes sure it still ends exactly once. Delays use the message's countdown.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.db import connection

from apps.core import log_context

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One kind of background work, taking one ID: `function` runs in a pool thread (thread executor) or in
    the Celery task called `name` (apps.runs.tasks declares one per job)."""

    name: str
    function: Callable[[str], str]

    def __call__(self, arg: str) -> str:
        return self.function(arg)


def job(name: str) -> Callable[[Callable[[str], str]], Job]:
    def register(function: Callable[[str], str]) -> Job:
        return Job(name=name, function=function)

    return register


class ThreadExecutor:
    name = "thread"

    def __init__(self, workers: int):
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="runs")

    def submit(self, job: Job, arg, *, delay: float = 0.0) -> None:
        # The job logs with the log context of the code that queued it (the request's request_id).
        if delay > 0:
            timer = threading.Timer(delay, log_context.carried(self.submit), args=(job, str(arg)))
            timer.daemon = True
            timer.start()
            return
        try:
            self.pool.submit(log_context.carried(self._call), job, str(arg))
        except RuntimeError:  # interpreter shutting down: the work stays persisted and is recovered later
            logger.warning("runs pool is shut down; %s left for recovery", arg)

    @staticmethod
    def _call(job: Job, arg: str) -> None:
        try:
            job(arg)
        except Exception:
            logger.exception("%s %s: executor job failed", job.name, arg)
        finally:
            connection.close()  # pool threads are long-lived: never keep a connection between jobs

    def shutdown(self, wait: bool = True) -> None:
        self.pool.shutdown(wait=wait)


class CeleryExecutor:
    name = "celery"

    def submit(self, job: Job, arg, *, delay: float = 0.0) -> None:
        # `current_app` is config.celery's app (config/__init__.py loads it with Django).
        current_app.send_task(job.name, args=[str(arg)], countdown=delay or None)


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


def submit(job: Job, arg, *, delay: float = 0.0) -> None:
    get_executor().submit(job, arg, delay=delay)
