"""SSRF guard for every outbound connection the engine makes (HTTP nodes, LLM calls, callbacks, SQL hosts).

The check lives in the network backend, below httpx's redirect handling: each new TCP connection resolves
its host once, refuses the whole name if any address is not public, and connects to the checked address
itself. So a DNS answer cannot change between check and use (no rebinding window), and every redirect hop
that opens a connection is checked again. TLS still uses the hostname (httpcore wraps the socket after
`connect_tcp`), so SNI and certificate checks are unchanged. Keep-alive pooling is kept: a pooled
connection is only ever reused for the same origin it was checked for.

One refusal, one answer: a name that does not resolve and a name that resolves to a forbidden address
raise the same BlockedAddressError (code `target_not_allowed`, one fixed message), so whoever can make the
platform call a URL (an anonymous caller of a public App) cannot probe which internal names exist. The
difference is kept on the exception's attributes and in one server-side log line only.

Clients are stateless (SPEC 12): pooled connections yes, but no cookie jar (a `Set-Cookie` answered in
one run must never ride along in another tenant's run, nor across the redirect hops of one request), no
client-level auth and no client-level headers. Every outbound client of the platform is a StatelessClient.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import typing
from collections.abc import Callable
from urllib.parse import urlsplit

import httpcore
import httpx

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], list[str]]
IsForbidden = Callable[[str], bool]

TARGET_NOT_ALLOWED = "target_not_allowed"
# The same words for "did not resolve" and "resolved to a forbidden address": no DNS probing through errors.
TARGET_NOT_ALLOWED_MESSAGE = "The target is not allowed: it must be a name that resolves to public addresses only"

# IPv6 ranges that embed an IPv4 address reachable through a translator: judged by that IPv4.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")

# Refused whatever Python's `is_global` says (its tables vary between versions and call deprecated ranges
# such as fec0::/10 global). IANA special-purpose registries, plus deprecated transition mechanisms: an
# IPv4-compatible, 6to4 or Teredo address is refused outright, not judged by the IPv4 inside (relays that
# translate them are not ours to trust, and nothing legitimate needs them).
_FORBIDDEN_V4 = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",  # 240/4 includes 255.255.255.255
))
_FORBIDDEN_V6 = tuple(ipaddress.ip_network(n) for n in (
    "::/96",  # unspecified, loopback and the deprecated IPv4-compatible form
    "100::/64", "2001::/23",  # discard-only; IETF protocol assignments (Teredo 2001::/32, ORCHID, benchmarking)
    "2001:db8::/32", "2002::/16", "3fff::/20",  # documentation; 6to4; documentation
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",  # unique local; link-local; site-local; multicast
))
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


class BlockedAddressError(httpx.ConnectError):
    """The target resolves to an address the platform must not reach (private, loopback, metadata...).

    A subclass of httpx.ConnectError so callers handling transport errors handle this one too; raised before
    any packet is sent to the address.
    """

    code = TARGET_NOT_ALLOWED

    def __init__(self, message: str = TARGET_NOT_ALLOWED_MESSAGE, *, host: str = "", address: str = "") -> None:
        super().__init__(message)
        # Server side only (logs, retry decisions); never put in an answer: `address` empty = did not resolve.
        self.host = host
        self.address = address


class NoCookiesMixin:
    """For httpx.Client subclasses: the client has no cookie jar.

    httpx reads and writes its jar only through the `cookies` property (merging into each request, storing
    every `Set-Cookie`, carrying the jar across redirect hops); a fresh empty jar per access makes each
    write land nowhere. `response.cookies` still shows what that one response set.
    """

    @property
    def cookies(self) -> httpx.Cookies:
        return httpx.Cookies()

    @cookies.setter
    def cookies(self, value: typing.Any) -> None:
        if value:
            raise ValueError("Outbound clients keep no cookies")


class StatelessClient(NoCookiesMixin, httpx.Client):
    """An httpx.Client safe to share between runs and tenants: pools connections, keeps no cookies, and
    refuses client-level auth and headers (whatever a run needs goes on its own request)."""

    def __init__(self, **kwargs: typing.Any) -> None:
        for shared_state in ("auth", "headers", "cookies"):
            if kwargs.get(shared_state):
                raise ValueError(f"A shared outbound client takes no {shared_state}: pass them per request")
        kwargs.setdefault("trust_env", False)
        super().__init__(**kwargs)


def _translated_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 behind an IPv4-mapped or NAT64 address (what a translator would connect to), else None."""
    if ip in _IPV4_MAPPED or any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_forbidden_ip(ip: str | IPAddress) -> bool:
    """True for anything that is not a plain public unicast address."""
    try:
        addr = ip if isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else ipaddress.ip_address(
            str(ip).split("%", 1)[0]
        )
    except ValueError:
        return True
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = _translated_ipv4(addr)
        if embedded is not None:
            return is_forbidden_ip(embedded)
        if addr not in _GLOBAL_UNICAST_V6 or any(addr in net for net in _FORBIDDEN_V6):
            return True
    elif any(addr in net for net in _FORBIDDEN_V4):
        return True
    # is_global alone lets multicast through (224/4 and ff00::/8 count as global), hence the extra checks.
    return not addr.is_global or addr.is_multicast or addr.is_reserved or addr.is_unspecified


def resolve_host(host: str, port: int) -> list[str]:
    """All addresses `host` resolves to (a literal IP resolves to itself), de-duplicated, in resolver order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen[str(sockaddr[0])] = None
    return list(seen)


def checked_addresses(
    host: str,
    port: int,
    *,
    allow_private: bool,
    resolve: Resolve = resolve_host,
    is_forbidden: IsForbidden = is_forbidden_ip,
) -> list[str]:
    """Resolve `host` once and return its addresses, or raise BlockedAddressError.

    One forbidden address refuses the whole name: a name answering both a public and a private address is
    a rebinding attempt or a misconfiguration, not something to half-trust.
    """
    host = host.strip("[]")
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        _refused(host, "", "did not resolve")
        raise BlockedAddressError(host=host) from exc
    if not addresses:
        _refused(host, "", "resolved to no address")
        raise BlockedAddressError(host=host)
    if not allow_private:
        for address in addresses:
            if is_forbidden(address):
                _refused(host, address, "resolves to a forbidden address")
                raise BlockedAddressError(host=host, address=address)
    return addresses


def _refused(host: str, address: str, reason: str) -> None:
    # The only place the two refusals differ. A host name and an address, never a URL (no query, no userinfo).
    logger.info("outbound target refused: host=%r address=%r reason=%s", host[:255], address, reason)


class GuardedNetworkBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, with the address check between name resolution and connect."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolve: Resolve = resolve_host,
        is_forbidden: IsForbidden = is_forbidden_ip,
    ) -> None:
        self.allow_private = allow_private
        self._resolve = resolve
        self._is_forbidden = is_forbidden
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = checked_addresses(
            host, port, allow_private=self.allow_private, resolve=self._resolve, is_forbidden=self._is_forbidden
        )
        last_error: httpcore.ConnectError | None = None
        for address in addresses:
            # Connect to the checked address, never to the name again. TLS (SNI, certificate) still uses the
            # hostname: httpcore passes it to start_tls after this returns.
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    def connect_unix_socket(self, path, timeout=None, socket_options=None):  # pragma: no cover - never used
        raise httpcore.ConnectError("Unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedHTTPTransport(httpx.HTTPTransport):
    """An httpx transport whose pool connects through GuardedNetworkBackend. Never uses a proxy."""

    def __init__(
        self,
        *,
        allow_private: bool,
        verify: bool | str = True,
        limits: httpx.Limits = DEFAULT_LIMITS,
        resolve: Resolve = resolve_host,
        is_forbidden: IsForbidden = is_forbidden_ip,
    ) -> None:
        # One SSL context for both pools: the parent's (discarded, never used) and ours.
        ssl_context = httpx.create_ssl_context(verify=verify, trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedNetworkBackend(
                allow_private=allow_private, resolve=resolve, is_forbidden=is_forbidden
            ),
        )


def make_http_client(
    *,
    allow_private: bool,
    timeout: float = 30.0,
    follow_redirects: bool = True,
    max_redirects: int = 5,
    resolve: Resolve = resolve_host,
    is_forbidden: IsForbidden = is_forbidden_ip,
) -> httpx.Client:
    """A StatelessClient (no cookies, auth or headers) whose every connection, redirect hops included, passes
    the SSRF guard.

    `trust_env=False`: an HTTP(S)_PROXY from the environment would connect to the proxy instead, bypassing
    the check. `resolve`/`is_forbidden` are injectable for tests only.
    """
    transport = GuardedHTTPTransport(allow_private=allow_private, resolve=resolve, is_forbidden=is_forbidden)
    return StatelessClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        trust_env=False,
    )


def check_url_target(url: str, *, allow_private: bool, require_https: bool = True) -> None:
    """Raise unless `url` may be called later: ValueError for a malformed URL or a plain-http one (when
    `require_https` and private targets are not allowed), BlockedAddressError for a non-public target.

    For validating URLs stored for later (callbacks). The request itself must still go through a guarded
    client: DNS may answer differently at delivery time. `allow_private` (development and tests) lifts both
    the HTTPS rule and the address rule.
    """
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("URL must be an absolute http(s) URL")
    if require_https and not allow_private and parts.scheme != "https":
        raise ValueError("URL must use https")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValueError("URL has an invalid port") from exc
    checked_addresses(parts.hostname, port, allow_private=allow_private)
