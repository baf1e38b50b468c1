"""Origins: the one place that parses a URL into (scheme, host, port) and compares them.

Every origin decision goes through here: credential pinning and redirect following of http nodes
(`http_origin`), the destination of connection URL fields and the OAuth2 token origin (`origin`), the
connect redirect allow-list (`browser_origin`), the hosted page's CSP form-action (`origin_text`) and an
App's allowed redirect origins (`normalize_origin`).

One rule for the host everywhere: lowercased and otherwise taken as written. A trailing dot is NOT
stripped: `api.example.com.` and `api.example.com` are different origins (docs/decisions.md, "Engine"),
so a comparison can only refuse more, never let a credential or a redirect through on a spelling.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from .errors import NodeError

DEFAULT_PORTS = {"http": 80, "https": 443}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

Origin = tuple[str, str, int | None]


def authority_head(url: str) -> str | None:
    """The `scheme://userinfo@host:port` part of an absolute URL as written (no parsing, templates kept),
    or None when the text has no `://`. What the origin of a not yet rendered/filled URL depends on."""
    stripped = url.strip()
    scheme_end = stripped.find("://")
    if scheme_end < 0:
        return None
    ends = [pos for pos in (stripped.find(sep, scheme_end + 3) for sep in "/?#") if pos >= 0]
    return stripped[: min(ends)] if ends else stripped


def origin(url: str) -> Origin | None:
    """(scheme, host, port) with default ports filled in (None for a scheme without one); None for an empty
    or unparsable URL. Any scheme: used to tell whether a stored URL's destination changed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS.get(scheme)


def http_origin(url: str) -> tuple[str, str, int]:
    """The origin of an absolute http(s) URL a node sends to; NodeError `invalid_url` for anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise NodeError("invalid_url", f"Not an absolute http(s) URL: {url!r}")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise NodeError("invalid_url", f"Invalid port in URL: {url!r}") from exc
    return scheme, parts.hostname.lower(), port


def browser_origin(url: Any) -> Origin | None:
    """The http(s) origin a browser would go to, or None for anything ambiguous.

    Refused: backslashes (WHATWG parsers read `\\` as `/`, Python's urlsplit does not, so
    `https://evil.example\\@good.example/` would pass a urlsplit check and land on evil.example),
    whitespace and control characters, and userinfo (`user@host`).
    """
    if not isinstance(url, str) or "\\" in url or any(c.isspace() or ord(c) < 32 for c in url):
        return None
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return None
    if "@" in netloc:
        return None
    found = origin(url)
    return found if found and found[0] in DEFAULT_PORTS else None


def origin_text(url: str) -> str:
    """`scheme://netloc` as written (a CSP source expression), or "" when the URL has neither."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def normalize_origin(value: Any) -> str | None:
    """`https://Example.com/x` -> `https://example.com` (path, query and fragment dropped); None when the
    value is not an http(s) URL with a host."""
    try:
        parts = urlsplit(str(value))
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.netloc.lower()}"


def placeholder_in_origin(url: str) -> bool:
    """True when a `{name}` placeholder sits in the scheme, userinfo, host or port of an absolute URL."""
    head = authority_head(url)
    return head is not None and bool(_PLACEHOLDER.search(head))


def origin_is_templated(raw_url: Any) -> bool:
    """True when the scheme/host/port part of a raw (unrendered) URL contains template syntax."""
    if not isinstance(raw_url, str) or not any(mark in raw_url for mark in ("{{", "{%")):
        return False
    stripped = raw_url.lstrip()
    if stripped.startswith("/") and not stripped.startswith("//"):
        return False  # a path: the origin comes from another layer
    head = authority_head(stripped)
    if head is None:
        return True
    return "{{" in head or "{%" in head
