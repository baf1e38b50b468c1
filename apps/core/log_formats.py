"""Log line formats (SPEC §15): one JSON object per line in production, readable text in development.

Both formatters redact token-like query values in the whole formatted line (message, extra fields,
traceback), not only in the message the `RedactQuerySecrets` filter sees: an exception's text (an
upstream URL in an httpx error) is part of the line too.

`log_format(env)` is the one rule for which format a process uses (`LOG_FORMAT`, else `json` unless
DEBUG); settings and gunicorn.conf.py both ask it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonEncoder
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from .log_context import FIELDS
from .log_redaction import redact_query_secrets

FORMATS = ("json", "text")
_LEADING = ("time", "level", "logger", "message", *FIELDS)


def log_format(env) -> str:
    """`LOG_FORMAT` (json or text) from a django-environ Env; by default text with DEBUG on, else JSON."""
    value = env.str("LOG_FORMAT", default="") or ("text" if env.bool("DEBUG", default=True) else "json")
    if value not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {value!r}")
    return value


class JsonFormatter(_BaseJsonFormatter):
    """`{"time", "level", "logger", "message", ...context fields, ...extra, "exc_info"?}` on one line.

    `time` is UTC ISO 8601 with milliseconds. Fields given in a record's `extra` appear as they are, so a
    call site can add structured fields (`status`, `duration_ms`). python-json-logger does the rest (the
    message, exceptions and stacks, a dict as message, encoding of datetimes, bytes, exceptions...). The
    fields are picked here rather than by its generic `add_fields`, and one encoder is reused: a line costs
    about half as much (bench/: the run line is written once per run).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._not_extra = frozenset({*RESERVED_ATTRS, *_LEADING})
        self._encoder = JsonEncoder(ensure_ascii=True)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        fields = record.__dict__
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        for name in FIELDS:
            if name in fields:
                log_data[name] = fields[name]
        for key in sorted(fields.keys() - self._not_extra):  # the `extra` fields, in a stable order
            if not key.startswith("_"):
                log_data[key] = fields[key]
        log_data.update(message_dict)  # exc_info, stack_info; the keys of a dict message

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        return self._encoder.encode(log_data)

    def format(self, record: logging.LogRecord) -> str:
        return redact_query_secrets(super().format(record))


class TextFormatter(logging.Formatter):
    """The usual text line, followed by the known context fields (`[request_id=... run_id=...]`)."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{name}={record.__dict__[name]}" for name in FIELDS if name in record.__dict__)
        if context:
            head, newline, rest = line.partition("\n")  # after the message, before a traceback
            line = f"{head} [{context}]{newline}{rest}"
        return redact_query_secrets(line)
