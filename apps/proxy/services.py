"""The authenticated proxy (SPEC §14): call an upstream with an end user's (or a shared) connection, for an
App's backend that never sees the credential.

One call:
1. resolution exactly as a run's (apps.credentials through the runs' resolver factory): the requirement's
   linked connection for (App, user_id) when `active`, or the shared connection; audited (CredentialAccess);
   unsatisfied → 409 `requirements_unsatisfied`;
2. the upstream URL: the connection's fixed origin and base path + the caller's path (apps.proxy.paths);
3. the request merged by the engine's HTTP merge (apps.engine.http_merge: the caller's headers are the node
   config layer, the connection's headers/params/data win, its credential is applied by type last, and the
   final origin is checked against the connection's), after the caller's Authorization, Cookie, Host,
   hop-by-hop and Connect-User-Id headers are dropped;
4. sent through the SSRF-guarded shared client (apps.runs.http), no redirect followed; a 401 goes to the
   resolver like an HTTP node's (OAuth2: one forced refresh, single-flight, then one retry);
5. the answer streamed (apps.proxy.streaming: masked with the engine's masker, across chunk boundaries),
   without Set-Cookie and hop-by-hop headers, cut past PROXY_MAX_RESPONSE_BYTES or the time budget;
6. one ProxyCall row when the call ends (however it ends), a metric and a log line.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone

from apps.core import log_context, metrics
from apps.core.errors import ApplicationError, BadRequest, NotFound, RequirementsUnsatisfied
from apps.deployments.models import App
from apps.engine.errors import NodeError
from apps.engine.http_merge import PreparedRequest, prepare_http_request
from apps.engine.masking import Masker
from apps.engine.netguard import BlockedAddressError
from apps.engine.types import CredentialResolver, ResolvedConnection
from apps.runs.execution import make_resolver
from apps.runs.http import guarded_client

from .errors import ConnectionNotProxyable, TargetNotAllowed, UpstreamTimeout, UpstreamTooLarge, UpstreamUnreachable
from .models import ProxyCall
from .paths import PathRefused, base_parts, upstream_url, within_base
from .selectors import ProxyTarget
from .streaming import BodyMasker

logger = logging.getLogger(__name__)

PROXIED_TYPES = ("http", "http_api_key", "oauth2")  # the HTTP node's types: credentials applied by its merge
HOP_BY_HOP = frozenset({"connection", "keep-alive", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
                        "proxy-authenticate", "proxy-authorization", "proxy-connection"})
# The caller's credentials and cookies, its view of the platform (Host, forwarding chain), the proxy's own
# parameter, and what httpx sets itself (length; encodings it can decode, so the body can be masked).
DROPPED_REQUEST_HEADERS = HOP_BY_HOP | frozenset({
    "authorization", "cookie", "host", "connect-user-id", "content-length", "accept-encoding",
    "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port", "x-real-ip",
})
# Cookies never cross (SPEC §12); the body is decoded and masked, so its length and encoding change; the
# upstream's HSTS / Alt-Svc would speak for the App host; Location is handled apart (redirects).
DROPPED_RESPONSE_HEADERS = HOP_BY_HOP | frozenset({
    "set-cookie", "set-cookie2", "content-length", "content-encoding", "location", "alt-svc",
    "strict-transport-security", "public-key-pins",
})


@dataclass
class ProxyRequest:
    app: App
    target: ProxyTarget
    method: str
    path: str  # below the base path, percent-decoded once (Django's path_info)
    query: str  # raw QUERY_STRING
    headers: Mapping[str, str]
    body: bytes
    user_id: str | None = None
    access_key_id: str | None = None
    prefix: str = ""  # how the caller reaches this target: `/apps/<id>/v1/proxy/<label>` (redirects)


@dataclass
class ProxyAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: ProxyStream


class CallAudit:
    """The call's ProxyCall row, written once when the call ends (`finish`), with its metric and log line."""

    def __init__(self, request: ProxyRequest) -> None:
        self.started = time.monotonic()
        self.row = ProxyCall(
            created_at=timezone.now(), app=request.app, access_key_id=request.access_key_id,
            user_id=request.user_id or "", target=request.target.label[:255],
            requirement_id=request.target.requirement_id, connection_id=request.target.connection_id,
            # A NUL (refused as a path, but the call is still recorded) cannot be stored in PostgreSQL text.
            method=request.method, path=request.path.replace("\x00", "\ufffd"),
            request_id=log_context.current().get("request_id", "")[:128],
        )
        self.done = False

    def headers_received(self) -> None:
        self.row.latency_ms = round((time.monotonic() - self.started) * 1000, 3)

    def finish(self, *, status: int | None, outcome: str, error_code: str = "", bytes_sent: int = 0) -> None:
        if self.done:
            return
        self.done = True
        row = self.row
        row.status, row.outcome, row.error_code, row.bytes_sent = status, outcome, error_code[:64], bytes_sent
        row.duration_ms = round((time.monotonic() - self.started) * 1000, 3)
        try:
            row.save(force_insert=True)
        except Exception:  # the caller already has (part of) its answer: a lost audit row is logged, not raised
            logger.exception("proxy call audit row not written")
        metrics.proxy_call(status=status, outcome=outcome)
        logger.info("proxy %s %s %s %s in %s ms", row.method, row.target, status or "-", outcome, row.duration_ms,
                    extra={"status": status, "outcome": outcome, "bytes": bytes_sent, "duration_ms": row.duration_ms,
                           **({"error_code": error_code} if error_code else {})})


def _resolve(request: ProxyRequest, resolver: CredentialResolver) -> ResolvedConnection:
    target = request.target
    resolution = resolver.resolve(
        connection_ids=[target.connection_id] if target.connection_id else [],
        requirement_ids=[target.requirement_id] if target.requirement_id else [],
        app_id=str(request.app.id), user_id=request.user_id, run_id=None,
    )
    if resolution.unsatisfied:
        raise RequirementsUnsatisfied(
            "The connection this call needs is not linked for this user. Mint a connect token and send the user to "
            "the hosted connect page.", details={"unsatisfied": list(resolution.unsatisfied)},
        )
    connection = (resolution.requirements.get(target.requirement_id or "")
                  or resolution.connections.get(target.connection_id or ""))
    if connection is None:  # a shared connection deleted or moved since the version was saved
        raise NotFound("The connection is not available.", details={"connection_id": ["not available"]})
    return connection


def forwarded_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The caller's headers minus what must not cross (see DROPPED_REQUEST_HEADERS), and minus any header the
    caller's `Connection` header names (hop-by-hop by declaration)."""
    named = {part.strip().lower() for part in headers.get("Connection", "").split(",") if part.strip()}
    return {name: value for name, value in headers.items()
            if name.lower() not in DROPPED_REQUEST_HEADERS and name.lower() not in named
            and not name.lower().startswith("proxy-")}


def _prepare(request: ProxyRequest, connection: ResolvedConnection) -> tuple[PreparedRequest, bytes | None]:
    """The upstream request (by the HTTP node's merge) and the raw body to send when the merge made none."""
    if connection.type not in PROXIED_TYPES:
        raise ConnectionNotProxyable(f"A {connection.type} connection cannot be used through the proxy.",
                                     details={"type": connection.type})
    base_url = connection.config.get("url")
    if not isinstance(base_url, str) or not base_url:
        raise ConnectionNotProxyable("This connection fixes no URL, so the proxy has no origin to call.")
    try:
        url = upstream_url(base_url=base_url, path=request.path, query=request.query)
    except PathRefused as exc:
        raise BadRequest(f"Path refused: {exc.reason}.", details={"path": [exc.reason]})
    config: dict[str, Any] = {"method": request.method, "url": url, "headers": forwarded_headers(request.headers)}
    raw_body: bytes | None = request.body or None
    if connection.type == "http" and connection.config.get("data") and request.body:
        # The connection adds body fields (secret, SPEC §12): merged key by key as the HTTP node does, so the
        # caller's body must be a JSON object.
        try:
            data = json.loads(request.body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise BadRequest("This connection adds fields to the body: send a JSON object.",
                             details={"body": ["must be a JSON object"]})
        config["data"], raw_body = data, None
    try:
        prepared = prepare_http_request(connection=connection, config=config)
    except NodeError as exc:
        raise ConnectionNotProxyable(f"The connection cannot be used: {exc.message}", details={"reason": exc.type})
    origin, base_path, _ = base_parts(base_url)
    if not (prepared.url == f"{origin}{base_path}" or prepared.url.startswith((f"{origin}{base_path}/",
                                                                                f"{origin}{base_path}?"))):
        raise BadRequest("Path refused: it leaves the connection's base path.", details={"path": ["leaves the base path"]})
    return prepared, (None if prepared.json is not None else raw_body)


def _timeout() -> httpx.Timeout:
    read = settings.PROXY_READ_TIMEOUT_SECONDS
    return httpx.Timeout(connect=settings.PROXY_CONNECT_TIMEOUT_SECONDS, read=read, write=read,
                         pool=settings.PROXY_CONNECT_TIMEOUT_SECONDS)


def _send(prepared: PreparedRequest, raw_body: bytes | None) -> httpx.Response:
    client = guarded_client(follow_redirects=False)
    url = httpx.URL(prepared.url)
    if prepared.params:
        url = url.copy_merge_params(prepared.params)  # the connection's params win per key
    upstream = client.build_request(prepared.method, url, headers=prepared.headers, json=prepared.json,
                                    content=raw_body, timeout=_timeout())
    try:
        return client.send(upstream, stream=True, follow_redirects=False)
    except BlockedAddressError as exc:
        raise TargetNotAllowed(str(exc))
    except httpx.TimeoutException:
        raise UpstreamTimeout("The upstream did not answer in time.")
    except httpx.HTTPError:
        raise UpstreamUnreachable("The upstream could not be reached.")


def _answer_headers(response: httpx.Response, masker: Masker, *, base_url: str, prefix: str) -> list[tuple[str, str]]:
    named = {part.strip().lower() for part in response.headers.get("connection", "").split(",") if part.strip()}
    headers = [(name, masker.mask_text(value)) for name, value in response.headers.multi_items()
               if name.lower() not in DROPPED_RESPONSE_HEADERS and name.lower() not in named]
    location = response.headers.get("location")
    if location:
        # Redirects are not followed. A Location under the connection's origin and base path is given back as the
        # same place through the proxy; any other is dropped (the caller's client would take its access key there).
        rest = within_base(location, base_url=base_url)
        if rest is not None:
            headers.append(("Location", masker.mask_text(f"{prefix}/{rest}")))
    return headers


def proxy_open(*, request: ProxyRequest, audit: CallAudit) -> ProxyAnswer:
    """Resolve, send, and open the upstream's answer. Raises ApplicationError for the proxy's own answers (the
    caller records them: `audit.finish`). The returned body stream finishes the audit when it ends."""
    log_context.bind(user_id=request.user_id)
    resolver = make_resolver()
    connection = _resolve(request, resolver)
    prepared, raw_body = _prepare(request, connection)
    masker = Masker.for_connections([connection])
    response = _send(prepared, raw_body)
    if response.status_code == 401:
        retry_with = resolver.on_unauthorized(connection=connection, run_id=None)  # as the HTTP node does
        if retry_with is not None:
            response.close()
            audit.row.retried = True
            masker = masker.extended(Masker.for_connections([retry_with]).secrets)
            prepared, raw_body = _prepare(request, retry_with)
            # A 401 again is passed on as it is: one refresh per call, never two (a freshly refreshed token
            # refused on one path is a permission of that path, not a dead grant).
            response = _send(prepared, raw_body)
    audit.headers_received()
    if not 200 <= response.status_code <= 599:  # h11 takes any 3 digits; Django answers only up to 599 (a 500)
        response.close()
        raise UpstreamUnreachable("The upstream answered with an invalid HTTP status.",
                                  details={"upstream_status": response.status_code})
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > settings.PROXY_MAX_RESPONSE_BYTES:
        response.close()
        raise UpstreamTooLarge(f"The upstream's answer is larger than {settings.PROXY_MAX_RESPONSE_BYTES} bytes.",
                               details={"limit_bytes": settings.PROXY_MAX_RESPONSE_BYTES})
    headers = _answer_headers(response, masker, base_url=connection.config["url"], prefix=request.prefix)
    return ProxyAnswer(status=response.status_code, headers=headers,
                       body=ProxyStream(response=response, masker=masker, audit=audit))


class StreamCut(Exception):
    """Raised out of the body iterator when the answer is cut (size or time limit, upstream failure mid-way):
    the WSGI server then drops the connection instead of ending the body properly, so the caller sees a
    truncated transfer, never a short body that looks complete."""


@dataclass
class _Cut(Exception):
    outcome: str
    error_code: str


@dataclass
class ProxyStream:
    """The answer's body for StreamingHttpResponse: iterates the upstream's (decoded) body, masked, within the
    limits; `close()` (called by the server when the response ends, however) closes the upstream and writes the
    audit row."""

    response: httpx.Response
    masker: Masker
    audit: CallAudit
    bytes_sent: int = 0
    _finished: bool = field(default=False, repr=False)

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks()

    def _upstream(self) -> Iterator[bytes]:
        limit = settings.PROXY_MAX_RESPONSE_BYTES
        deadline = self.audit.started + settings.PROXY_TOTAL_TIMEOUT_SECONDS
        received = 0
        try:
            for chunk in self.response.iter_bytes():
                received += len(chunk)
                if received > limit:
                    raise _Cut(ProxyCall.Outcome.TOO_LARGE, "upstream_too_large")
                if time.monotonic() > deadline:
                    raise _Cut(ProxyCall.Outcome.TIMED_OUT, "upstream_timeout")
                yield chunk
        except httpx.TimeoutException:
            raise _Cut(ProxyCall.Outcome.TIMED_OUT, "upstream_timeout")
        except httpx.HTTPError:
            raise _Cut(ProxyCall.Outcome.UPSTREAM_ERROR, "upstream_unreachable")

    def _chunks(self) -> Iterator[bytes]:
        body = BodyMasker(self.masker)
        try:
            for chunk in self._upstream():
                out = body.feed(chunk)
                if out:
                    self.bytes_sent += len(out)
                    yield out
            rest = body.flush()
            if rest:
                self.bytes_sent += len(rest)
                yield rest
        except _Cut as cut:
            self._end(cut.outcome, cut.error_code)
            raise StreamCut(f"proxied answer cut: {cut.outcome}") from None
        self._end(ProxyCall.Outcome.COMPLETED, "")

    def _end(self, outcome: str, error_code: str) -> None:
        if self._finished:
            return
        self._finished = True
        self.response.close()
        self.audit.finish(status=self.response.status_code, outcome=outcome, error_code=error_code,
                          bytes_sent=self.bytes_sent)

    def close(self) -> None:
        self._end(ProxyCall.Outcome.CLIENT_GONE, "")


def refused(audit: CallAudit, exc: ApplicationError) -> None:
    """Record a call the proxy answered itself."""
    outcome = (ProxyCall.Outcome.UPSTREAM_ERROR if isinstance(exc, (TargetNotAllowed, UpstreamTimeout,
               UpstreamUnreachable, UpstreamTooLarge)) else ProxyCall.Outcome.REFUSED)
    audit.finish(status=exc.status, outcome=outcome, error_code=exc.code)
