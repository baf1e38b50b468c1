"""The proxy's own answers when the upstream gave none (SPEC §14). Codes join the documented enum
(apps.core.errors.error_codes reads every ApplicationError subclass)."""

from __future__ import annotations

from apps.core.errors import ApplicationError
from apps.engine.netguard import TARGET_NOT_ALLOWED


class TargetNotAllowed(ApplicationError):
    """The connection's host resolves to an address the platform must not reach (SSRF guard). 400 as for
    callback URLs (the same code, one status), whether the name did not resolve or resolved to a forbidden
    address."""

    code, status = TARGET_NOT_ALLOWED, 400


class UpstreamUnreachable(ApplicationError):
    """No answer from the upstream: connection refused or reset, TLS or protocol error."""

    code, status = "upstream_unreachable", 502


class UpstreamTimeout(ApplicationError):
    """No answer from the upstream within PROXY_CONNECT_TIMEOUT_SECONDS / PROXY_READ_TIMEOUT_SECONDS."""

    code, status = "upstream_timeout", 504


class UpstreamTooLarge(ApplicationError):
    """The upstream announced (Content-Length) an answer longer than PROXY_MAX_RESPONSE_BYTES."""

    code, status = "upstream_too_large", 502


class ConnectionNotProxyable(ApplicationError):
    """The connection cannot be used by the proxy: a type without an HTTP origin (openai, postgresql), or a
    row the HTTP node would refuse too (no URL fixing where its credentials go, an OAuth2 one without a token)."""

    code, status = "connection_not_proxyable", 409
