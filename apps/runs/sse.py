"""Server-Sent Events of runs: reading a run's events back in sequence order (`tail_events`), the frames
of both SSE shapes, the heartbeat, and the streaming response.

- runs API (`POST /v1/runs` with `stream: true`, `GET /v1/runs/{id}/stream`): every run event,
  `event: <type>` / `id: <sequence>` / `data: <event JSON>`.
- invoke (`POST /` with `stream: true`): the seed's shape, one
  `data: {"event": "data", "data": {"choices": [{"delta": {"content"}}]}}` per LLM delta, then one final
  frame `data: {"event": "data", "data": {"id", "status", "output", "error"}}`, then the stream ends.
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.http import StreamingHttpResponse

from .events import END, TERMINAL_EVENTS
from .models import Run, RunEvent
from .serializers import serialize_event

POLL_SECONDS = 0.05
HEARTBEAT = b": heartbeat\n\n"


def sse_frame(event: RunEvent | dict[str, Any]) -> bytes:
    payload = serialize_event(event) if isinstance(event, RunEvent) else event
    body = json.dumps(payload, separators=(",", ":"))
    return f"event: {payload['type']}\nid: {payload['sequence']}\ndata: {body}\n\n".encode()

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
                    if item is END:
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
            if item is END:
                source.put(END)
                return
    except queue.Empty:
        return


def sse_response(body: Iterator[bytes], *, run_id: str | None = None) -> StreamingHttpResponse:
    """WSGI: the worker thread serving this response is held until the stream ends (see README on
    gunicorn worker classes)."""
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    if run_id:
        response["X-Run-Id"] = run_id
    return response


def run_event_frames(events: Iterator[RunEvent | None]) -> Iterator[bytes]:
    for event in events:
        yield HEARTBEAT if event is None else sse_frame(event)


def _data_frame(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps({"event": "data", "data": data}, separators=(",", ":")).encode() + b"\n\n"


def invoke_frames(run: Run, events: Iterator[RunEvent | None]) -> Iterator[bytes]:
    for event in events:
        if event is None:
            yield HEARTBEAT
        elif event.type == "llm.delta":
            yield _data_frame({"choices": [{"delta": {"content": event.data.get("content", "")}}]})
        elif event.type in TERMINAL_EVENTS:
            yield _data_frame({
                "id": str(run.id), "status": event.type.split(".", 1)[1],
                "output": event.data.get("output"), "error": event.data.get("error"),
            })
