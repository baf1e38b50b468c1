"""Run events as they happen: the database sink of background/stream runs, and the Server-Sent Events
that read them.

Ordering: one writer per run at a time (the attempt holding the claim) inserts each event in its own
autocommit INSERT with the next sequence, so events become visible in sequence order and a reader that
asks for `sequence > N` never skips one. A stale attempt that collides on (run, sequence) is refused by
the unique constraint and stops writing (see `DbEventSink.superseded`).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import Max
from django.utils import timezone

from .models import Run, RunEvent

TERMINAL_EVENTS = frozenset({"run.completed", "run.failed", "run.canceled"})
POLL_SECONDS = 0.05
_END = object()


def next_sequence(run_id) -> int:
    return (RunEvent.objects.filter(run_id=run_id).aggregate(m=Max("sequence"))["m"] or 0) + 1


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
            self.tee.put(_END)


def sse_frame(event: RunEvent | dict[str, Any]) -> bytes:
    from .services import serialize_event

    payload = serialize_event(event) if isinstance(event, RunEvent) else event
    body = json.dumps(payload, separators=(",", ":"))
    return f"event: {payload['type']}\nid: {payload['sequence']}\ndata: {body}\n\n".encode()


HEARTBEAT = b": heartbeat\n\n"


def tail_events(*, run_id, after_sequence: int = 0, source: queue.Queue | None = None) -> Iterator[RunEvent | None]:
    """Yield the run's events after `after_sequence` in sequence order until the terminal one; `None`
    when a heartbeat is due (idle for SSE_HEARTBEAT_SECONDS).

    With `source` (the queue of a run executing in this process) the reader wakes as soon as an event is
    stored; without, the table is polled every POLL_SECONDS. Either way events are read from the table,
    from the last sequence seen, so nothing is lost or repeated whatever the interleaving.
    """
    heartbeat = float(settings.SSE_HEARTBEAT_SECONDS)
    last = after_sequence
    idle_since = time.monotonic()
    checked_end = False
    try:
        while True:
            batch = list(RunEvent.objects.filter(run_id=run_id, sequence__gt=last).order_by("sequence")[:500])
            for event in batch:
                last = event.sequence
                yield event
                if event.type in TERMINAL_EVENTS:
                    return
            if batch:
                idle_since = time.monotonic()
                continue
            if not checked_end:
                # Resuming at or after the terminal event (always the run's last): nothing more will come.
                checked_end = True
                if RunEvent.objects.filter(run_id=run_id, type__in=TERMINAL_EVENTS, sequence__lte=last).exists():
                    return
            remaining = heartbeat - (time.monotonic() - idle_since)
            if remaining > 0:
                if source is not None:
                    try:
                        item = source.get(timeout=remaining)
                    except queue.Empty:
                        item = None
                    if item is _END:
                        source = None  # the run finished here: what is left is in the table
                    elif item is not None:
                        _drain(source)
                    continue
                time.sleep(min(POLL_SECONDS, remaining))
                continue
            idle_since = time.monotonic()
            if not Run.objects.filter(id=run_id).exists():
                return  # deleted meanwhile
            yield None
    finally:
        close_old_connections()


def _drain(source: queue.Queue) -> None:
    try:
        while True:
            item = source.get_nowait()
            if item is _END:
                source.put(_END)
                return
    except queue.Empty:
        return
