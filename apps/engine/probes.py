"""Verification at link time (SPEC §13): one request that proves a credential works, and whose account it is.

- What is sent: a type's default probe (`ConnectionType.probe`, e.g. openai `GET models`) or a requirement's
  `spec.verify` `{"method", "path", "expect", "account": {"id", "label"}}`. The path is resolved against the
  connection's base URL exactly as an http node's relative URL is (RFC 3986); the final origin must be the
  base URL's, so no probe sends a credential anywhere else.
- How credentials are applied: as a run applies them, by the same code. `http` and `http_api_key` go through
  `prepare_http_request` (the http node's merge, origin pinning and auth header), `openai` through
  `openai_auth_headers` (the llm node's).
- What comes back: an outcome, never the upstream's body or headers (an upstream may echo the key). 401/403
  is `credentials_invalid`; any other failure (timeout, refused target, redirect elsewhere, 5xx, a status
  not expected, an account id missing from the answer) is `verification_failed`.
- Budget: one wall-clock deadline (5 s by default) for the whole exchange, redirects and body included; the
  body is read only up to MAX_BODY_BYTES.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import httpx

from .connection_types import ConfigError, get_type
from .errors import NodeError
from .http_merge import PreparedRequest, openai_auth_headers, openai_base_url, prepare_http_request
from .masking import Masker, connection_secrets
from .netguard import BlockedAddressError
from .origins import http_origin
from .types import ResolvedConnection

VERIFY_METHODS = ("GET", "POST")
MAX_BODY_BYTES = 256 * 1024
MAX_REDIRECTS = 5
MAX_PATH_LENGTH = 2000
MAX_ACCOUNT_TEXT = 255
DEFAULT_BUDGET_SECONDS = 5.0
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+")

Outcome = Literal["ok", "credentials_invalid", "verification_failed"]


@dataclass(frozen=True)
class ProbeSpec:
    method: str
    path: str
    expect: tuple[int, ...] = ()  # empty: any 2xx
    account_id: str | None = None
    account_label: str | None = None


@dataclass(frozen=True)
class ProbeOutcome:
    outcome: Outcome
    message: str
    status_code: int | None = None
    account: dict[str, str] | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def json_path_segments(path: str) -> list[str]:
    """`$.data.user.id`, `data.user.id`, `items[0].login` -> segments; ValueError when malformed."""
    if not isinstance(path, str) or not path.strip() or len(path) > 200:
        raise ValueError("must be a JSON path such as $.data.email")
    text = path.strip()
    text = text[1:] if text.startswith("$") else text
    text = text[1:] if text.startswith(".") else text
    text = re.sub(r"\[(\d+)\]", r".\1", text)
    segments = text.split(".")
    if not segments or not all(_PATH_SEGMENT.fullmatch(s) for s in segments):
        raise ValueError("must be a JSON path such as $.data.email (names, dots and [index] only)")
    return segments


def json_path_value(document: Any, path: str) -> Any:
    """The value at `path`, or None when any step is missing."""
    current = document
    for segment in json_path_segments(path):
        if isinstance(current, Mapping):
            current = current.get(segment)
        elif isinstance(current, list) and segment.isdigit() and int(segment) < len(current):
            current = current[int(segment)]
        else:
            return None
        if current is None:
            return None
    return current


def validate_verify_spec(type_name: str, verify: Any) -> dict:
    """A requirement's `spec.verify`, normalized, or ConfigError keyed by its fields."""
    ctype = get_type(type_name)
    if ctype.base_url_field is None or ctype.oauth:
        raise ConfigError({"verify": [
            "oauth2 requirements verify through the provider's userinfo_url" if ctype.oauth
            else f"{ctype.name} connections are not verified over HTTP"
        ]})
    if not isinstance(verify, Mapping):
        raise ConfigError({"verify": ["must be an object"]})
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(verify) - {"method", "path", "expect", "account"})
    if unknown:
        errors["verify"] = ["unknown field(s); allowed: method, path, expect, account"]  # input is not echoed
    method = str(verify.get("method") or "GET").upper()
    if method not in VERIFY_METHODS:
        errors["method"] = [f"must be one of {', '.join(VERIFY_METHODS)}"]
    path = verify.get("path")
    if not isinstance(path, str) or not path.strip():
        errors["path"] = ["this field is required: the path to call, relative to the connection's base URL"]
    else:
        problem = _path_problem(path.strip())
        if problem:
            errors["path"] = [problem]
    expect = verify.get("expect", [])
    if not isinstance(expect, list) or len(expect) > 20 or not all(
        isinstance(code, int) and not isinstance(code, bool) and 200 <= code <= 399 for code in expect
    ):
        errors["expect"] = ["must be a list of HTTP status codes from 200 to 399 (default: any 2xx)"]
    account = verify.get("account")
    result_account: dict[str, str] | None = None
    if account is not None:
        if not isinstance(account, Mapping) or set(account) - {"id", "label"} or "id" not in account:
            errors["account"] = ['must be {"id": "<json path>", "label"?: "<json path>"}']
        else:
            result_account = {}
            for key in ("id", "label"):
                if key in account:
                    try:
                        json_path_segments(account[key])
                    except ValueError as exc:
                        errors.setdefault("account", []).append(f"{key} {exc}")
                    else:
                        result_account[key] = account[key].strip()
    if errors:
        raise ConfigError(errors)
    result: dict[str, Any] = {"method": method, "path": path.strip()}
    if expect:
        result["expect"] = sorted(set(expect))
    if result_account:
        result["account"] = result_account
    return result


def _path_problem(path: str) -> str | None:
    if len(path) > MAX_PATH_LENGTH:
        return f"must be at most {MAX_PATH_LENGTH} characters"
    if any(ch in path for ch in "\\{}") or any(ord(ch) < 33 or ord(ch) == 127 for ch in path):
        return "must be a plain path: no backslash, {placeholder}, space or control character"
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or path.startswith("//"):
        return "must be a path relative to the connection's base URL (/v1/me or me), not a URL"
    return None


def probe_for(type_name: str, verify: Mapping[str, Any] | None) -> ProbeSpec | None:
    """The probe to run: the requirement's `spec.verify` (already validated), else the type's default."""
    if verify:
        account = verify.get("account") or {}
        return ProbeSpec(
            method=verify.get("method", "GET"), path=verify["path"], expect=tuple(verify.get("expect") or ()),
            account_id=account.get("id"), account_label=account.get("label"),
        )
    default = get_type(type_name).probe
    return ProbeSpec(method=default.method, path=default.path) if default else None


def prepare_probe(connection: ResolvedConnection, spec: ProbeSpec) -> PreparedRequest:
    """The probe as a request with the connection's credentials applied as a run applies them. NodeError when
    the connection cannot be probed (no base URL, a path that leaves the base URL's origin)."""
    if connection.type in ("http", "http_api_key"):
        if not connection.config.get("url"):
            raise NodeError("no_url", "The connection has no base URL to verify against")
        return prepare_http_request(connection=connection, config={"method": spec.method, "url": spec.path})
    if connection.type == "openai":
        base_url = openai_base_url(connection)
        pinned = http_origin(base_url)
        url = urljoin(base_url + "/", spec.path)
        if http_origin(url) != pinned:
            raise NodeError("origin_not_allowed", "The verification path leaves the connection's origin")
        return PreparedRequest(method=spec.method, url=url, headers=openai_auth_headers(connection), pinned_origin=pinned)
    raise NodeError("invalid_connection", f"{connection.type} connections are not verified over HTTP")


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpx.TimeoutException("verification budget spent")
    return left


def _send(client: httpx.Client, prepared: PreparedRequest, deadline: float) -> httpx.Response:
    """Send with the response streamed (the caller reads a bounded body), following redirects by hand and
    only within the pinned origin (as the http node does: a custom key header must not follow elsewhere)."""
    url = httpx.URL(prepared.url)
    if prepared.params:
        url = url.copy_merge_params(prepared.params)
    request = client.build_request(prepared.method, url, headers=prepared.headers, json=prepared.json,
                                   timeout=_remaining(deadline))
    for _ in range(MAX_REDIRECTS + 1):
        response = client.send(request, follow_redirects=False, stream=True)
        next_request = response.next_request
        if next_request is None:
            return response
        response.close()
        if http_origin(str(next_request.url)) != prepared.pinned_origin:
            raise NodeError("redirect_not_allowed", "The upstream redirected to another origin; not followed")
        next_request.extensions["timeout"] = httpx.Timeout(_remaining(deadline)).as_dict()
        request = next_request
    raise NodeError("too_many_redirects", f"More than {MAX_REDIRECTS} redirects")


def _read_body(response: httpx.Response, deadline: float) -> bytes | None:
    """At most MAX_BODY_BYTES of the body; None when it is longer."""
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        _remaining(deadline)
    return b"".join(chunks)


def _account_text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        text = str(value).strip()
        return text[:MAX_ACCOUNT_TEXT] or None
    return None


def _failed(message: str, status_code: int | None = None) -> ProbeOutcome:
    return ProbeOutcome("verification_failed", message, status_code)


def run_probe(
    client: httpx.Client, connection: ResolvedConnection, spec: ProbeSpec, *,
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
) -> ProbeOutcome:
    """Run one probe through `client` (an SSRF-guarded client) within `budget_seconds`. Never raises for an
    upstream or network failure; messages carry a status code at most, never upstream text."""
    deadline = time.monotonic() + budget_seconds
    try:
        prepared = prepare_probe(connection, spec)
        response = _send(client, prepared, deadline)
        try:
            status = response.status_code
            if status in (401, 403):
                return ProbeOutcome("credentials_invalid", f"The service rejected the credentials (HTTP {status}).",
                                    status)
            expected = status in spec.expect if spec.expect else 200 <= status < 300
            if not expected:
                return _failed(f"The verification request answered HTTP {status}, not the expected status.", status)
            account = None
            if spec.account_id:
                body = _read_body(response, deadline)
                account = _account(body, spec, connection)
                if account is None:
                    return _failed("The verification answer did not say which account the credentials belong to.",
                                   status)
        finally:
            response.close()
    except BlockedAddressError:
        return _failed("The verification target is not allowed.")
    except NodeError as exc:
        return _failed(f"The verification request could not be sent ({exc.type}).")
    except httpx.TimeoutException:
        return _failed(f"The verification request did not finish within {budget_seconds:g} seconds.")
    except httpx.HTTPError as exc:
        return _failed(f"The verification request failed ({type(exc).__name__}).")
    return ProbeOutcome("ok", "verified", status, account)


def _account(body: bytes | None, spec: ProbeSpec, connection: ResolvedConnection) -> dict[str, str] | None:
    if body is None:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    account_id = _account_text(json_path_value(document, spec.account_id or ""))
    if account_id is None:
        return None
    label = _account_text(json_path_value(document, spec.account_label)) if spec.account_label else None
    account = {"id": account_id, "label": label or account_id}
    # An upstream that answers with the key itself (or any form of it) as the "account" must not get it stored
    # in clear: masked like any run output.
    masker = Masker(connection_secrets(connection))
    return {key: masker.mask_text(value) for key, value in account.items()}
