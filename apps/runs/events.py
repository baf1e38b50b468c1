"""Recording a run's events: in memory for a synchronous run (`EventBuffer`, one bulk INSERT at the end), or
one INSERT per event as it happens for a run executed outside its request (`DbEventSink`).

Ordering: one writer per run at a time (the attempt holding the claim) inserts each event in its own
autocommit INSERT with the next sequence, so events become visible in sequence order and a reader that
asks for `sequence > N` never skips one. A stale attempt that collides on (run, sequence) is refused by
the unique constraint and stops writing (see `DbEventSink.superseded`).

A sink may also hand each stored event to a queue (`tee`), read by a streaming response in this process
(apps.runs.sse); `END` on that queue means the run's executor is done with it.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from apps.core.rawsql import uuid4_batch

from .models import Run, RunEvent

TERMINAL_EVENTS = frozenset({"run.completed", "run.failed", "run.canceled"})
END = object()  # on a tee queue: no more events will be stored by this process


def next_sequence(run_id) -> int:
    return (RunEvent.objects.filter(run_id=run_id).aggregate(m=Max("sequence"))["m"] or 0) + 1


class EventBuffer:
    """Collects a run's events in memory with their sequence numbers; written with the run by
    apps.core.rawsql.insert_together (one multi-row INSERT whatever the number of nodes). Rows,
    not model instances: a synchronous run's events are only ever written, and building a RunEvent per
    event cost more than writing them (bench/inprocess.py --profile)."""

    COLUMNS = ("id", "run_id", "sequence", "type", "data", "timestamp")

    def __init__(self, run: Run, *, start_sequence: int = 0):
        self.run = run
        self.sequence = start_sequence
        self.events: list[tuple[int, str, dict[str, Any], Any]] = []

    def emit(self, type: str, data: dict[str, Any], *, timestamp=None) -> None:
        self.sequence += 1
        self.events.append((self.sequence, type, data, timestamp or timezone.now()))

    def batch(self) -> tuple[type[RunEvent], tuple[str, ...], list[tuple]]:
        """The events as (model, columns, rows) for apps.core.rawsql.insert_together / insert_rows."""
        ids = uuid4_batch(len(self.events))
        return RunEvent, self.COLUMNS, [(event_id, self.run.id, *event) for event_id, event in zip(ids, self.events, strict=True)]


class DbEventSink:
    """`emit(type, data)` INSERTs the event at once with the next sequence. Optionally also hands each
    stored event to a queue (a streaming response reading in another thread)."""

    def __init__(self, run: Run, *, start_sequence: int, tee: queue.Queue | None = None):
        self.run = run
        self.sequence = start_sequence - 1
        self.tee = tee
        self.superseded = False
        self._lock = threading.Lock()

    def emit(self, type: str, data: dict[str, Any]) -> RunEvent | None:
        with self._lock:
            if self.superseded:
                return None
            event = RunEvent(run=self.run, sequence=self.sequence + 1, type=type, data=data, timestamp=timezone.now())
            try:
                if connection.in_atomic_block:  # the terminal event: keep the caller's transaction usable
                    with transaction.atomic():
                        event.save(force_insert=True)
                else:
                    event.save(force_insert=True)
            except IntegrityError:
                # Another attempt owns the run now (our lease lapsed): stop writing, never renumber.
                self.superseded = True
                return None
            self.sequence += 1
            if self.tee is not None:
                if connection.in_atomic_block:  # announce the terminal event once it is committed
                    transaction.on_commit(lambda: self.tee.put(event))
                else:
                    self.tee.put(event)
            return event

    def close(self) -> None:
        if self.tee is not None:
            self.tee.put(END)

