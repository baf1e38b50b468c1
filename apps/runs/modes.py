"""Non-synchronous modes of `POST /v1/runs` and direct invoke `POST /`.

- background (runs API) → 202 with the Run itself (bare) plus `stream_url`, status `created`; the executor
  runs it.
- async (invoke) → 202 `{"id", "status": "accepted", "stream_url"}`; the executor runs it, then the
  callbacks fire.
- `stream_url` (and the `X-Stream-Url` header of stream answers): the run's SSE URL with a run-scoped
  token (apps.runs.stream_tokens), for browser EventSource clients.
- stream → Server-Sent Events while the run executes. The run is persisted and claimed by this request,
  then executed in a thread of this process (not the executor: the answer has to come from here, and a
  queue of background work must not delay an interactive stream). Its events are stored as they happen
  and the response reads them back in sequence order, woken by an in-memory queue instead of polling.
  A client that disconnects does not stop the run: it ends, stored, and `GET /v1/runs/{id}/stream`
  resumes it.
  - runs API: every run event, `event: <type>` / `id: <sequence>` / `data: <event JSON>`.
  - invoke: the seed's shape, one `data: {"event": "data", "data": {"choices": [{"delta": {"content"}}]}}`
    per LLM delta, then one final frame `data: {"event": "data", "data": {"id", "status", "output",
    "error"}}`, then the stream ends.

An Idempotency-Key repeat answers with the first run: the same 202, or its stream replayed from the table.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.db import connection
from django.http import StreamingHttpResponse
from rest_framework.response import Response

from apps.core.errors import RequirementsUnsatisfied
from apps.deployments.models import App

from .events import HEARTBEAT, sse_frame, tail_events
from .models import Run, RunEvent
from .requests import RunRequest
from .services import run_accept, serialize_run
from .stream_tokens import stream_url
from .worker import Claim, claim_run, execute_claimed

# How long a stream waits for the run to get past credential resolution before answering: long enough to
# turn `requirements_unsatisfied` into a 409 like a synchronous run, short enough never to stall a stream.
FIRST_EVENT_WAIT_SECONDS = 10.0


def start(*, request, app: App, run_request: RunRequest, kind: str):
    """After apps.runs.apis has validated the whole request (callbacks included)."""
    if run_request.mode in ("background", "async"):
        run, replayed = run_accept(app=app, request=run_request)
        url = stream_url(request, run=run)
        if run_request.mode == "async":
            return Response({"id": str(run.id), "status": "accepted", "stream_url": url}, status=202)
        return Response({**serialize_run(run), "stream_url": url}, status=202)
    return _stream(request=request, app=app, run_request=run_request, kind=kind)


def _stream(*, request, app: App, run_request: RunRequest, kind: str) -> StreamingHttpResponse:
    run, replayed = run_accept(app=app, request=run_request)
    source: queue.Queue | None = None
    if not replayed:
        claim = claim_run(run.id)
        if isinstance(claim, Claim):
            source = queue.Queue()
            thread = threading.Thread(target=_execute, args=(claim, source), name=f"run-stream-{run.id}", daemon=True)
            thread.start()
            _raise_if_unsatisfied(run, source)
    events = tail_events(run_id=run.id, after_sequence=0, source=source)
    body = run_event_frames(events) if kind == "runs" else invoke_frames(run, events)
    response = sse_response(body, run_id=str(run.id))
    # The same stream, resumable by a browser EventSource (no Authorization header) after a disconnect.
    response["X-Stream-Url"] = stream_url(request, run=run)
    return response


def _execute(claim: Claim, source: queue.Queue) -> None:
    try:
        execute_claimed(claim, tee=source)
    finally:
        connection.close()


def _raise_if_unsatisfied(run: Run, source: queue.Queue) -> None:
    """Peek (the queue only wakes readers; events are read from the table) until the run is past
    credential resolution. Unsatisfied requirements answer 409 like a synchronous run (the failed run is
    stored, as there); anything else streams."""
    deadline = time.monotonic() + FIRST_EVENT_WAIT_SECONDS
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            item = source.get(timeout=remaining)
        except queue.Empty:
            return
        if not isinstance(item, RunEvent):
            source.put(item)  # end marker: leave it for the reader
            return
        if item.type == "run.started":
            continue
        if item.type == "run.failed" and (item.data.get("error") or {}).get("code") == "requirements_unsatisfied":
            error = item.data["error"]
            raise RequirementsUnsatisfied(
                "Some connections this workflow needs are not linked for this user. Mint a connect token and "
                "send the user to the hosted connect page.",
                details={**error.get("details", {}), "run_id": str(run.id)},
            )
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
        elif event.type in ("run.completed", "run.failed", "run.canceled"):
            yield _data_frame({
                "id": str(run.id), "status": event.type.split(".", 1)[1],
                "output": event.data.get("output"), "error": event.data.get("error"),
            })
