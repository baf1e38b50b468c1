"""Non-synchronous modes (stream, background, async). Filled in by the async/streaming work."""

from __future__ import annotations

from apps.core.errors import BadRequest


def start(*, request, app, run_request, kind: str):
    raise BadRequest(f"Mode '{run_request.mode}' is not available yet.", details={"mode": [run_request.mode]})
