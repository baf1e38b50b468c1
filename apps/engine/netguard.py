"""SSRF guard for every outbound connection the engine makes (HTTP nodes, LLM calls, callbacks, SQL hosts).

The check lives in the network backend, below httpx's redirect handling: each new TCP connection resolves
its host once, refuses the whole name if any address is not public, and connects to the checked address
itself. So a DNS answer cannot change between check and use (no rebinding window), and every redirect hop
that opens a connection is checked again. TLS still uses the hostname (httpcore wraps the socket after
`connect_tcp`), so SNI and certificate checks are unchanged. Keep-alive pooling is kept: a pooled
connection is only ever reused for the same origin it was checked for.
"""

from __future__ import annotations

import ipaddress
import socket
import typing
from collections.abc import Callable
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], list[str]]
IsForbidden = Callable[[str], bool]

# IPv6 ranges that embed an IPv4 address reachable through a translator: judged by that IPv4.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


class BlockedAddressError(httpx.ConnectError):
    """The target resolves to an address the platform must not reach (private, loopback, metadata...).

    A subclass of httpx.ConnectError so callers handling transport errors handle this one too; raised before
    any packet is sent to the address.
    """

    def __init__(self, message: str, *, host: str = "", address: str = "") -> None:
        super().__init__(message)
        self.host = host
        self.address = address


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _NAT64) or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
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
        embedded = _embedded_ipv4(addr)
        if embedded is not None:
            return is_forbidden_ip(embedded)
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
    except OSError as exc:
        raise BlockedAddressError(f"Could not resolve host {host!r}", host=host) from exc
    if not addresses:
        raise BlockedAddressError(f"Could not resolve host {host!r}", host=host)
    if not allow_private:
        for address in addresses:
            if is_forbidden(address):
                raise BlockedAddressError(
                    f"Refused to connect to {host!r}: it resolves to a non-public address", host=host, address=address
                )
    return addresses


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
    """An httpx.Client whose every connection (redirect hops included) passes the SSRF guard.

    `trust_env=False`: an HTTP(S)_PROXY from the environment would connect to the proxy instead, bypassing
    the check. `resolve`/`is_forbidden` are injectable for tests only.
    """
    transport = GuardedHTTPTransport(allow_private=allow_private, resolve=resolve, is_forbidden=is_forbidden)
    return httpx.Client(
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
