"""The JSON shapes of a Run and a RunEvent (App-host answers, SSE frames) and of a run's terminal event.

Its own module, at the bottom of the runs layers, because every layer needs these shapes: the views and
the SSE frames answer with them, and the synchronous path and the run lifecycle write the terminal event.
"""

from __future__ import annotations

from typing import Any

from apps.core.formats import rfc3339

from .models import Run, RunEvent


def serialize_run(run: Run) -> dict[str, Any]:
    return {
        "id": str(run.id),
        "app_id": str(run.app_id),
        "status": run.status,
        "input": run.input,
        "output": run.output,
        "error": run.error,
        "user_id": run.user_id or None,
        "session_id": run.session_id or None,
        "created_at": rfc3339(run.created_at),
        "started_at": rfc3339(run.started_at),
        "ended_at": rfc3339(run.ended_at),
        "nodes": run.nodes,
    }


def serialize_event(event: RunEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "type": event.type,
        "sequence": event.sequence,
        "timestamp": rfc3339(event.timestamp),
        "data": event.data,
    }


def terminal_event_data(run: Run) -> dict[str, Any]:
    """The data of `run.completed` / `run.failed` / `run.canceled`."""
    data: dict[str, Any] = {"status": run.status}
    if run.status == Run.Status.COMPLETED:
        data["output"] = run.output
    elif run.error:
        data["error"] = run.error
    return data
