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
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.db import close_old_connections, connection
from kombu.utils.uuid import uuid

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
    """A pool of `workers` threads draining one FIFO backlog. A thread keeps its database connection while
    there is more work in the backlog (opening one per job cost a quarter of a run's CPU: on SQLite the
    connection set-up and PRAGMAs, on PostgreSQL a TCP and auth round trip) and closes it when it finds the
    backlog empty, so an idle pool holds no connection."""

    name = "thread"

    def __init__(self, workers: int):
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="runs")
        self.backlog: queue.SimpleQueue[tuple[Job, str, dict[str, str]]] = queue.SimpleQueue()

    def submit(self, job: Job, arg, *, delay: float = 0.0) -> None:
        # The job logs with the log context of the code that queued it (the request's request_id).
        if delay > 0:
            timer = threading.Timer(delay, log_context.carried(self.submit), args=(job, str(arg)))
            timer.daemon = True
            timer.start()
            return
        # One drain per item: every item put is followed by a drain that finds it, or finds it taken.
        self.backlog.put((job, str(arg), log_context.current()))
        try:
            self.pool.submit(self._drain)
        except RuntimeError:  # interpreter shutting down: the work stays persisted and is recovered later
            logger.warning("runs pool is shut down; %s left for recovery", arg)

    def _drain(self) -> None:
        try:
            while True:
                try:
                    job, arg, fields = self.backlog.get_nowait()
                except queue.Empty:
                    return
                close_old_connections()  # between jobs as between requests: CONN_MAX_AGE, broken connections
                with log_context.scope(fields):
                    try:
                        job(arg)
                    except Exception:
                        logger.exception("%s %s: executor job failed", job.name, arg)
        finally:
            connection.close()  # pool threads are long-lived: never keep a connection while idle

    def shutdown(self, wait: bool = True) -> None:
        self.pool.shutdown(wait=wait)


class CeleryExecutor:
    """Publishes Celery's own task message (`app.amqp.create_task_message`) to the default queue with one
    kombu Producer per process, kept on its broker connection (publishes take turns on a lock), with Celery's
    publish retry policy. `send_task` does the same through the router and the producer pool at about twice
    the CPU per message, which a web process accepting runs pays on every request (docs/decisions.md)."""

    name = "celery"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._producer = None

    def submit(self, job: Job, arg, *, delay: float = 0.0) -> None:
        # `current_app` is config.celery's app (config/__init__.py loads it with Django).
        app = current_app
        message = app.amqp.create_task_message(uuid(), job.name, [str(arg)], {}, countdown=delay or None,
                                               ignore_result=app.conf.task_ignore_result)
        with self._lock:
            if self._producer is None:
                self._producer = app.amqp.Producer(app.connection_for_write(), auto_declare=False)
            try:
                # The anonymous exchange: the routing key is the queue the workers consume.
                self._producer.publish(
                    message.body, exchange="", routing_key=app.conf.task_default_queue,
                    serializer=app.conf.task_serializer, headers=_with_log_context(message.headers),
                    retry=app.conf.task_publish_retry,
                    retry_policy=app.conf.task_publish_retry_policy, **message.properties,
                )
            except Exception:
                self._close()  # the next message starts on a new connection
                raise

    def _close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.connection.release()

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            self._close()


def _with_log_context(headers: dict) -> dict:
    """The task runs in the worker with the log context of the code that queued it (config/celery.py)."""
    fields = log_context.current()
    return {**headers, log_context.HEADER: dict(fields)} if fields else headers


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
