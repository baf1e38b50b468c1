"""The embedded scheduler: a thread in each web process of the thread executor (the default, `make run`),
ticking every SCHEDULER_TICK_SECONDS and running the jobs that are due through the lease (services), so
several gunicorn workers, each with its thread, still run each job once per period. With the `celery`
executor the clock is Celery beat instead (config/celery.py) and no thread starts.

Started on a server process's first request, like run recovery (apps.runs.recovery explains why not in
AppConfig.ready(): no queries there, and with `gunicorn --preload` the thread would start in the master and
not survive the fork). Never in migrate, shell, tests or any other management command, unless a test starts
one. Stopped cleanly at exit: the tick's wait is interrupted and the thread joined (a job in progress
finishes its batch first; retention jobs are bounded, see apps.core.retention).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Sequence

from django.conf import settings
from django.core.signals import request_started
from django.db import connection

from apps.core.processes import is_server_command

from .registry import JOBS, PeriodicJob
from .services import due_jobs, job_run_if_due

logger = logging.getLogger(__name__)


class SchedulerThread:
    def __init__(self, *, jobs: Sequence[PeriodicJob] = JOBS, tick_seconds: float | None = None):
        self.jobs = tuple(jobs)
        self.tick_seconds = float(tick_seconds if tick_seconds is not None else settings.SCHEDULER_TICK_SECONDS)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._failing = False
        self.ticks = 0  # ticks completed (tests wait on it rather than on time)

    def start(self) -> SchedulerThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the thread to stop and wait for it. True once it has stopped."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def tick(self) -> None:
        """Run every due job this process wins. A failing tick (database down) logs one warning per streak."""
        try:
            for job in due_jobs(jobs=self.jobs):
                if self._stopping.is_set():
                    break
                job_run_if_due(job)
            if self._failing:
                logger.warning("scheduler: database reachable again, jobs resume")
            self._failing = False
        except Exception as exc:
            if not self._failing:
                logger.warning("scheduler: tick failed (%s: %s); retrying every %ss", type(exc).__name__, exc,
                               self.tick_seconds)
            self._failing = True
        finally:
            connection.close()  # a long-lived thread keeps no connection between ticks
            self.ticks += 1

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self.tick()
            self._stopping.wait(self.tick_seconds)


_scheduler: SchedulerThread | None = None
_lock = threading.Lock()


def start_scheduler() -> SchedulerThread:
    """Start this process's scheduler thread (once)."""
    global _scheduler
    with _lock:
        if _scheduler is None or not _scheduler.alive:
            _scheduler = SchedulerThread().start()
        return _scheduler


def stop_scheduler(timeout: float = 30.0) -> bool:
    global _scheduler
    with _lock:
        scheduler, _scheduler = _scheduler, None
    return scheduler.stop(timeout) if scheduler is not None else True


def _forget_after_fork() -> None:
    global _scheduler
    _scheduler = None  # threads do not survive a fork; the child starts its own on its first request


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def runs_scheduler_thread(argv: list[str]) -> bool:
    """Whether this process runs the scheduler thread: SCHEDULER_THREAD when set; otherwise the server
    processes (runserver, gunicorn) of the thread executor."""
    override = settings.SCHEDULER_THREAD
    if override is not None:
        return bool(override)
    return settings.RUNS_EXECUTOR == "thread" and is_server_command(argv)


def install_scheduler_on_start() -> None:
    if not runs_scheduler_thread(sys.argv):
        return

    def on_first_request(**kwargs) -> None:
        request_started.disconnect(on_first_request, dispatch_uid="scheduler-start")
        start_scheduler()

    request_started.connect(on_first_request, dispatch_uid="scheduler-start", weak=False)
    atexit.register(stop_scheduler)
