"""Who a log line is about (SPEC §15): `request_id`, `app_id`, `run_id`, `user_id`, held in a context variable
and stamped onto every record by the `AddLogContext` filter of the LOGGING handlers.

Who sets it:
- a request: `RequestLogContextMiddleware` (request_id, echoed as `X-Request-ID`; app_id once the App is
  known); connect-token authentication and the hosted connect page add app_id and user_id;
- a run: `apps.runs.execution.execute_run` and the run lifecycle bind run_id, app_id, user_id;
- work handed to another thread or process carries the context of the code that handed it over: the
  thread executor and the stream thread through `carried`, Celery tasks through a message header
  (config/celery.py).

The value is a small dict that is never changed in place (`bind` makes a new one), so a snapshot taken
for a job stays what it was when the job was queued.
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

FIELDS = ("request_id", "app_id", "run_id", "user_id")
HEADER = "log_context"  # the Celery message header that carries the context to a worker (config/celery.py)

_EMPTY: dict[str, str] = {}
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_context", default=_EMPTY)

# A request ID a client or proxy may choose: 1-128 characters that cannot break a log line or a header
# (no spaces, quotes, `=` or `&`). Anything else is replaced by a new ID.
_WELL_FORMED_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_from(header: str | None) -> str:
    """The incoming `X-Request-ID` when well-formed, else a new one (32 hex characters)."""
    if header and _WELL_FORMED_REQUEST_ID.fullmatch(header):
        return header
    return secrets.token_hex(16)


def current() -> dict[str, str]:
    """The fields known here (only those known: no empty values). Do not modify it."""
    return _context.get()


def bind(**fields: Any) -> None:
    """Add fields to the current context (None and empty values are skipped). The code that owns the
    context (a request, a job, a task) resets it when it ends."""
    known = {name: str(value) for name, value in fields.items() if value is not None and value != ""}
    if known:
        _context.set({**_context.get(), **known})


def start(fields: Mapping[str, str] | None = None) -> None:
    """Begin a context of its own (a request), replacing whatever this thread had before."""
    _context.set(dict(fields) if fields else _EMPTY)


def clear() -> None:
    _context.set(_EMPTY)


@contextmanager
def scope(fields: Mapping[str, str] | None) -> Iterator[None]:
    """Run a block (a job, a task) in the given context, restoring the previous one after."""
    token = _context.set(dict(fields) if fields else _EMPTY)
    try:
        yield
    finally:
        _context.reset(token)


def carried(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` wrapped to run, wherever it is called (another thread), in the context of now."""
    fields = _context.get()

    def run_in_context(*args: Any, **kwargs: Any) -> Any:
        with scope(fields):
            return function(*args, **kwargs)

    return run_in_context


class AddLogContext(logging.Filter):
    """Stamps the known fields onto each record (a field the caller passed in `extra` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if name not in record.__dict__:
                setattr(record, name, value)
        return True
