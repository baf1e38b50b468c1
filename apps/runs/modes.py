"""The HTTP answers of the non-synchronous modes of `POST /v1/runs` and direct invoke `POST /` (the
synchronous one is the Run itself, answered by apps.runs.apis).

- background (runs API) → 202 with the Run itself (bare) plus `stream_url`, status `created`; the executor
  runs it.
- async (invoke) → 202 `{"id", "status": "accepted", "stream_url"}`; the executor runs it, then the
  callbacks fire.
- `stream_url` (and the `X-Stream-Url` header of stream answers): the run's SSE URL with a run-scoped
  token (apps.runs.stream_tokens), for browser EventSource clients.
- stream → Server-Sent Events (apps.runs.sse) while the run executes in this process
  (apps.runs.services.run_stream_start): every run event for the runs API, the seed's shape for invoke.

An Idempotency-Key repeat answers with the first run: the same 202, or its stream replayed from the table.
"""

from __future__ import annotations

from django.http import StreamingHttpResponse
from rest_framework.response import Response

from .requests import RunRequest
from .serializers import serialize_run
from .services import run_accept, run_stream_start
from .sse import invoke_frames, run_event_frames, sse_response, tail_events
from .stream_tokens import stream_url


def start(*, request, run_request: RunRequest, kind: str):
    """After apps.runs.apis has validated the whole request (callbacks included)."""
    if run_request.mode in ("background", "async"):
        run, _ = run_accept(app=request.app, request=run_request)
        url = stream_url(request, run=run)
        if run_request.mode == "async":
            return Response({"id": str(run.id), "status": "accepted", "stream_url": url}, status=202)
        return Response({**serialize_run(run), "stream_url": url}, status=202)
    return _stream(request=request, run_request=run_request, kind=kind)


def _stream(*, request, run_request: RunRequest, kind: str) -> StreamingHttpResponse:
    run, source = run_stream_start(app=request.app, request=run_request)
    events = tail_events(run_id=run.id, after_sequence=0, source=source)
    body = run_event_frames(events) if kind == "runs" else invoke_frames(run, events)
    response = sse_response(body, run_id=str(run.id))
    # The same stream, resumable by a browser EventSource (no Authorization header) after a disconnect.
    response["X-Stream-Url"] = stream_url(request, run=run)
    return response
