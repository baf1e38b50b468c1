"""The life of a persisted run outside the request that created it (thread pool, Celery task, stream
thread): claim, execute (apps.runs.execution), heartbeat and cancel, finish, and schedule its callbacks.

Exactly once: a run is claimed with one conditional UPDATE (`created` -> `started`, attempts + 1), or,
when its previous attempt's process died (heartbeat older than RUNS_LEASE_SECONDS), re-claimed with a
conditional UPDATE on (status `started`, that attempt number, stale heartbeat). The attempt writes the
terminal state with an UPDATE conditioned on still holding the claim, in the same transaction as the
terminal event. Two attempts can therefore never both end a run.

A redone run keeps the events of its abandoned attempt (they happened, and an SSE reader may have seen
them) and continues the sequence after them with a new `run.started` carrying `attempt`: sequences stay
strictly increasing and unique, so a reader resuming with `after_sequence` neither loses nor repeats one.

Each process executing runs has one RunMonitor thread: every CANCEL_POLL_SECONDS it reads the cancel
flag and attempt number of the runs it is executing (one query for all of them) and refreshes their
heartbeats every lease/3. The engine's `is_canceled` is then an in-memory Event check.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.core import log_context, metrics

from .callbacks import deliver_callback
from .dispatch import job, submit
from .events import DbEventSink, next_sequence
from .execution import execute_run
from .models import CallbackDelivery, Run, RunEvent
from .serializers import terminal_event_data

logger = logging.getLogger(__name__)

CANCEL_POLL_SECONDS = 0.2


class Outcome(enum.Enum):
    DONE = "done"  # this call ended the run, or found it already ended / gone
    BUSY = "busy"  # another live attempt holds it: look again after the lease
    SUPERSEDED = "superseded"  # this attempt lost its claim while executing; another attempt ends the run


@dataclass
class Claim:
    run: Run
    attempt: int


def lease_seconds() -> float:
    return float(settings.RUNS_LEASE_SECONDS)


def claim_run(run_id) -> Claim | Outcome:
    """Take a run for execution, atomically. Returns the Claim, or DONE/BUSY."""
    now = timezone.now()
    claimed = Run.objects.filter(id=run_id, status=Run.Status.CREATED, cancel_requested=False).update(
        status=Run.Status.STARTED, attempts=F("attempts") + 1, started_at=now, heartbeat_at=now
    )
    if not claimed:
        current = Run.objects.filter(id=run_id).values("status", "attempts", "heartbeat_at", "cancel_requested").first()
        if current is None or current["status"] in Run.TERMINAL:
            return Outcome.DONE
        if current["status"] == Run.Status.CREATED:  # cancel requested while queued: the cancel service ends it
            cancel_run(run_id=run_id)
            return Outcome.DONE
        stale = now - timezone.timedelta(seconds=lease_seconds())
        claimed = (
            Run.objects.filter(id=run_id, status=Run.Status.STARTED, attempts=current["attempts"])
            .filter(Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True))
            .update(attempts=F("attempts") + 1, heartbeat_at=now)
        )
        if not claimed:
            return Outcome.BUSY
    run = Run.objects.select_related("workflow_version", "app").get(id=run_id)
    if run.attempts == 1 and run.mode in (Run.Mode.BACKGROUND, Run.Mode.ASYNC):
        metrics.run_queue_lag(mode=run.mode, created_at=run.created_at, started_at=run.started_at)
    return Claim(run=run, attempt=run.attempts)


class RunMonitor:
    """Per process: cancel flags and heartbeats of the runs this process executes (see module doc)."""

    def __init__(self) -> None:
        self._runs: dict[str, tuple[int, threading.Event]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._last_heartbeat = 0.0

    def register(self, run_id: str, attempt: int) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._runs[run_id] = (attempt, event)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="runs-monitor", daemon=True)
                self._thread.start()
            self._wake.notify()
        return event

    def unregister(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def cancel_local(self, run_id: str) -> bool:
        with self._lock:
            entry = self._runs.get(run_id)
        if entry:
            entry[1].set()
        return entry is not None

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._runs:
                    connection.close()  # idle: hold no database connection
                    self._wake.wait()
                runs = dict(self._runs)
            try:
                self._poll(runs, time.monotonic())
            except Exception:  # a database hiccup must not kill the monitor
                logger.exception("run monitor poll failed")
                close_old_connections()
            time.sleep(CANCEL_POLL_SECONDS)

    def _poll(self, runs: dict[str, tuple[int, threading.Event]], now: float) -> None:
        rows = Run.objects.filter(id__in=list(runs)).values_list("id", "cancel_requested", "attempts", "status")
        for run_id, cancel_requested, attempts, status in rows:
            attempt, event = runs[str(run_id)]
            if cancel_requested or attempts != attempt or status != Run.Status.STARTED:
                event.set()
        if now - self._last_heartbeat >= lease_seconds() / 3:
            self._last_heartbeat = now
            condition = Q()
            for run_id, (attempt, _) in runs.items():
                condition |= Q(id=run_id, attempts=attempt)
            Run.objects.filter(condition, status=Run.Status.STARTED).update(heartbeat_at=timezone.now())


monitor = RunMonitor()


def process_run(run_id, *, tee: queue.Queue | None = None) -> Outcome:
    """Claim and execute one run to its end."""
    claim = claim_run(run_id)
    if isinstance(claim, Outcome):
        if tee is not None:
            tee.put(None)
        return claim
    return execute_claimed(claim, tee=tee)


@job("runs.execute_run")
def execute_run_job(run_id: str) -> str:
    """The background job of a run, for every executor (thread pool or Celery task): process it, and if
    another live attempt holds it (BUSY: e.g. a redelivered message while the lease is still fresh), look
    again after the lease."""
    log_context.bind(run_id=run_id)
    outcome = process_run(run_id)
    if outcome is Outcome.BUSY:
        submit(execute_run_job, run_id, delay=lease_seconds())
    return outcome.value


def execute_claimed(claim: Claim, *, tee: queue.Queue | None = None) -> Outcome:
    run, attempt = claim.run, claim.attempt
    run_id = str(run.id)
    log_context.bind(run_id=run_id, app_id=run.app_id, user_id=run.user_id)
    sink = DbEventSink(run, start_sequence=next_sequence(run.id), tee=tee)
    cancel_event = monitor.register(run_id, attempt)
    try:
        sink.emit("run.started", {"attempt": attempt})

        def is_canceled() -> bool:
            return cancel_event.is_set() or sink.superseded

        try:
            execute_run(run=run, emit=sink.emit, is_canceled=is_canceled)
        except Exception as exc:  # the engine never raises for node problems; this is our own failure
            logger.exception("run %s crashed", run_id)
            run.status = Run.Status.FAILED
            run.output = None
            run.error = {"code": "internal_error", "message": f"The run could not be executed ({type(exc).__name__})",
                         "details": {}}
            run.ended_at = timezone.now()
        # A lost claim also shows as a cancel to the engine; finish_run tells the two apart.
        return finish_run(run=run, attempt=attempt, sink=sink, terminal=terminal_event_data(run))
    finally:
        monitor.unregister(run_id)
        sink.close()


def finish_run(*, run: Run, attempt: int, sink: DbEventSink, terminal: dict[str, Any]) -> Outcome:
    """Write the end of the run if this attempt still holds it: state and terminal event together."""
    with transaction.atomic():
        ended = Run.objects.filter(id=run.id, status=Run.Status.STARTED, attempts=attempt).update(
            status=run.status, output=run.output, error=run.error, nodes=run.nodes, ended_at=run.ended_at,
        )
        if not ended:
            sink.superseded = True
            return Outcome.SUPERSEDED
        sink.emit(f"run.{run.status}", terminal)
        if sink.superseded:  # the terminal event's sequence was taken: only a newer attempt can do that
            transaction.set_rollback(True)
            return Outcome.SUPERSEDED
        _schedule_callbacks(run.id)
    metrics.run_ended(mode=run.mode, status=run.status, started_at=run.started_at, ended_at=run.ended_at)
    return Outcome.DONE


def cancel_run(*, run_id) -> Run | None:
    """Cancel a run: a `created` one ends at once (with its run.canceled event); a `started` one is flagged
    and stops between nodes or during an LLM stream; a finished one is left as it is."""
    now = timezone.now()
    error = {"code": "canceled", "message": "The run was canceled", "details": {}}
    with transaction.atomic():
        ended = Run.objects.filter(id=run_id, status=Run.Status.CREATED).update(
            status=Run.Status.CANCELED, cancel_requested=True, error=error, ended_at=now,
        )
        run = Run.objects.filter(id=run_id).first()
        if run is None:
            return None
        if ended:
            RunEvent.objects.create(run=run, sequence=next_sequence(run.id), type="run.canceled",
                                    data=terminal_event_data(run), timestamp=now)
            _schedule_callbacks(run.id)
            transaction.on_commit(lambda: metrics.run_ended(mode=run.mode, status=run.status, started_at=None,
                                                            ended_at=now))
            return run
    if run.status == Run.Status.STARTED:
        Run.objects.filter(id=run_id, status=Run.Status.STARTED).update(cancel_requested=True)
        run.cancel_requested = True
        monitor.cancel_local(str(run_id))
    return run


def _schedule_callbacks(run_id) -> None:
    ids = list(CallbackDelivery.objects.filter(run_id=run_id, status=CallbackDelivery.Status.PENDING)
               .values_list("id", flat=True))
    if ids:
        transaction.on_commit(lambda: [submit(deliver_callback, delivery_id) for delivery_id in ids])
