"""The one JSON parser of every DRF view (REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]): bounded size and depth.

DRF's own JSONParser reads the whole stream (Django's DATA_UPLOAD_MAX_MEMORY_SIZE guards `request.body`
and forms, not DRF's stream reads) and lets the C decoder recurse until RecursionError, which left as a
500. Here a body over DATA_UPLOAD_MAX_MEMORY_SIZE is a 413 before it is read in full, and JSON nested
deeper than MAX_JSON_DEPTH a 400 (SPEC.md section 12).
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework.parsers import BaseParser

from .errors import BadRequest, PayloadTooLarge


def max_body_bytes() -> int:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def body_too_large() -> PayloadTooLarge:
    limit = max_body_bytes()
    return PayloadTooLarge(f"The request body is larger than {limit} bytes.", details={"body": [f"at most {limit} bytes"]})


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether containers nest deeper than `limit` (the top-level container is depth 1). Iterative: a
    recursive walk would hit the recursion limit on exactly the bodies it has to refuse."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def loads_bounded(raw: bytes) -> Any:
    """Decode a JSON body within MAX_JSON_DEPTH; any failure is a 400 `bad_request`."""
    limit = settings.MAX_JSON_DEPTH
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise BadRequest(f"The JSON body is nested too deep (at most {limit} levels).")
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity
        raise BadRequest(f"JSON parse error - {exc}")
    # Cheap bound first (bytes.count runs in C): fewer brackets than the limit cannot nest past it.
    if raw.count(b"[") + raw.count(b"{") > limit and json_depth_exceeds(data, limit):
        raise BadRequest(f"The JSON body is nested too deep (at most {limit} levels).")
    # Text a database cannot store comes only from \u escapes (JSON refuses raw control characters and the
    # bytes were valid UTF-8): a NUL (PostgreSQL text and jsonb refuse it) or a lone surrogate (not UTF-8).
    # Refused here, as a 400, rather than failing the INSERT with a 500; only bodies with an escape are walked.
    if b"\\u" in raw and _has_unstorable_text(data):
        raise BadRequest("The JSON body contains text that cannot be stored: a \\u0000 character or a lone "
                         "UTF-16 surrogate.")
    return data


def _has_unstorable_text(value: Any) -> bool:
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_unstorable_text(k) or _has_unstorable_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_unstorable_text(item) for item in value)
    return False


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class JSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        if stream is None:
            return {}
        limit = max_body_bytes()
        raw = stream.read(limit + 1)  # at most one byte past the limit, whatever Content-Length claims
        if len(raw) > limit:
            raise body_too_large()
        return loads_bounded(raw)
