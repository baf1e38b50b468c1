"""Rate limits (SPEC §15): per caller and scope, a fixed window counted in Django's cache.

Who is counted: the caller a request authenticated as, by its `rate_limit_identity` (an access key
`key:<id>`, a connect token `token:<jti>`; an MCP session will declare `mcp:<session id>` the same way),
and an anonymous caller (public Apps) by client IP, under the `anonymous` scope whatever the operation.
What is counted: the operations a view lists in `rate_limits` (HTTP method → scope), through the DRF
throttle `RateLimit` (DEFAULT_THROTTLE_CLASSES, so a view only declares). Plain Django views (the hosted
connect page) call `check()` themselves. Limits per scope: settings.RATE_LIMITS, `(count, seconds)` or None (off),
from RATE_LIMIT_* (README "Production").

The counter of a (scope, identity) lives for one window: `rl:<scope>:<identity>:<window number>`, created
by `add()` and counted by `incr()`, both atomic on Redis, in SQLiteCache (the embedded default) and in
LocMemCache (one process). A request over the limit is refused with `429 rate_limited` and Retry-After (the
seconds until the window ends). Each identity's windows start at an offset of their own, so the callers
refused in one minute do not all come back in the same second.

MCP sessions (SPEC §14, apps.mcp) plug in the same way: the session's authentication object has
`rate_limit_identity = "mcp:<session id>"`, the MCP views declare `rate_limits = {"POST": "mcp"}`, and
settings.RATE_LIMITS an `mcp` entry (RATE_LIMIT_MCP).

A cache that cannot be reached lets requests through (logged at most once a minute per process): the
limits protect the service, they must not take it down with Redis.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
import zlib

from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from rest_framework.throttling import BaseThrottle

from .errors import RateLimited

logger = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
CACHE_FAILURE_LOG_INTERVAL_SECONDS = 60.0
_last_cache_failure_log = 0.0


def client_ip(request) -> str:
    """The client's address: REMOTE_ADDR, or with RATE_LIMIT_TRUSTED_PROXIES = N (the proxies in front, each
    appending to X-Forwarded-For) the Nth address from the right of X-Forwarded-For. Entries left of it are
    the client's to write, so they are never read. IPv6 clients count per /64 (one host holds a whole /64)."""
    address = request.META.get("REMOTE_ADDR", "")
    trusted = settings.RATE_LIMIT_TRUSTED_PROXIES
    if trusted:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if len(forwarded) >= trusted and forwarded[-trusted]:
            address = forwarded[-trusted]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64] or "unknown"
    if ip.version == 6:
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def check(scope: str, identity: str) -> None:
    """Count one request of `identity` in `scope`; RateLimited (429) once over the scope's limit."""
    try:
        rate = settings.RATE_LIMITS[scope]
    except KeyError:
        raise ImproperlyConfigured(f"No rate limit for scope {scope!r} in settings.RATE_LIMITS") from None
    if rate is None:
        return
    limit, period = rate
    now = time.time()
    offset = zlib.crc32(identity.encode()) % period
    window = int((now + offset) // period)
    key = f"rl:{scope}:{identity}:{window}"
    try:
        count = _count(key, period)
    except Exception:  # any backend's connection error (redis-py's, sqlite3's...): let the request through
        _log_cache_failure()
        return
    if count > limit:
        retry_after = max(1, math.ceil((window + 1) * period - offset - now))
        raise RateLimited(
            f"Too many requests: at most {limit} per {period} s for this {_WHO.get(identity.partition(':')[0], 'caller')}. "
            f"Retry after {retry_after} s.",
            details={"scope": scope, "limit": limit, "period_seconds": period, "retry_after": retry_after},
            retry_after=retry_after,
        )


_WHO = {"key": "access key", "token": "connect token", "ip": "client address", "mcp": "MCP session"}


def _count(key: str, period: int) -> int:
    cache = caches["default"]
    try:
        return cache.incr(key)  # the usual case: the window's counter exists (one statement)
    except ValueError:
        # First request of the window. The counter outlives its window by a second, so it never expires
        # while its window still counts (no incr on an expired key: Redis would make it without a TTL).
        if cache.add(key, 1, timeout=period + 1):
            return 1
        return cache.incr(key)  # another worker added it in between


def _log_cache_failure() -> None:
    global _last_cache_failure_log
    now = time.monotonic()
    if now - _last_cache_failure_log >= CACHE_FAILURE_LOG_INTERVAL_SECONDS:
        _last_cache_failure_log = now
        logger.warning("rate limits not applied: the cache cannot be reached")


def identity_of(request) -> str:
    """`rate_limit_identity` of what the request authenticated with; the client IP when anonymous."""
    auth = request.auth
    if auth is None:
        return "ip:" + client_ip(request)
    identity = getattr(auth, "rate_limit_identity", None)
    if identity is None:
        raise ImproperlyConfigured(f"{type(auth).__name__} has no rate_limit_identity: it cannot be rate limited")
    return identity


class RateLimit(BaseThrottle):
    """DRF throttle for the operations a view lists in `rate_limits = {"POST": "runs", ...}`. Runs after
    authentication and permissions (DRF's order), so it knows the caller. Refuses by raising RateLimited."""

    def allow_request(self, request, view) -> bool:
        scope = getattr(view, "rate_limits", {}).get(request.method)
        if scope is not None:
            check(ANONYMOUS if request.auth is None else scope, identity_of(request))
        return True


def limited_methods(view) -> dict[str, str]:
    """The methods a view limits, and their scope (the OpenAPI document adds the 429 to those)."""
    return dict(getattr(view, "rate_limits", {}))
