"""The upstream URL of a proxied call: the connection's fixed origin and base path, plus the caller's path.

The caller's path arrives percent-decoded once (the server decodes PATH_INFO, as WSGI says), so `%2e%2e`
is already `..` and `%2f` already `/` here. Rather than guess what an upstream (or a proxy in front of it)
would make of an ambiguous path, anything that could move the request off the base path is refused
(`PathRefused`, a 400):
- dot segments (`.`, `..`, also with `;parameters`: `..;/` is `../` to Tomcat and Jetty), wherever they are:
  nothing above the base path, and no upstream ever sees one;
- empty segments except a trailing slash (`a//b`, `//evil`, and so `http://evil/x` typed as a path);
- backslashes (WHATWG parsers read `\\` as `/`), control characters and whitespace;
- what is still percent-encoded after the server's decoding (`%252e%252e` arrives as `%2e%2e`): a second
  decoding by the upstream would turn it into a dot segment or a slash.
Every segment is then percent-encoded again (RFC 3986 `pchar`: `?`, `#`, `{`, `/`... become escapes), so it
cannot end the path, start a query, or fill a `{placeholder}` of the connection's URL. The origin is never
taken from the caller: the URL is built as the base URL's `scheme://netloc` + base path + `/` + the
segments, so an `@` or a `:` in the path stays a path character.

The query string is forwarded as the caller wrote it, minus `user_id` (the proxy's own parameter) and minus
any name the connection's URL fixes in its own query (the connection's value stands).
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, unquote_plus, urlsplit

# RFC 3986 pchar minus `%` (escapes are made by quote): unreserved, sub-delims, ":" and "@".
_SEGMENT_SAFE = "-._~!$&'()*+,;=:@"
_STILL_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")
_FORBIDDEN_CHARS = re.compile(r"[\\\x00-\x20\x7f]")


class PathRefused(ValueError):
    """The caller's path could leave the base path or be read two ways; `reason` says which rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def safe_segments(path: str) -> list[str]:
    """The caller's (decoded) path as segments, or PathRefused. `""` is the base path itself; a trailing
    slash is kept as a last empty segment (APIs differ on it)."""
    if path == "":
        return []
    if _FORBIDDEN_CHARS.search(path):
        raise PathRefused("backslashes, whitespace and control characters are not allowed in the path")
    if _STILL_ENCODED.search(path):
        raise PathRefused("the path is percent-encoded twice: send each character encoded once")
    segments = path.split("/")
    for index, segment in enumerate(segments):
        # `..;x`: Tomcat and Jetty drop a segment's `;parameters` before resolving dot segments.
        if segment.split(";", 1)[0] in (".", ".."):
            raise PathRefused("dot segments (. and ..) are not allowed in the path")
        if segment == "" and index != len(segments) - 1:
            raise PathRefused("empty path segments (//) are not allowed, except a trailing slash")
    return segments


def base_parts(base_url: str) -> tuple[str, str, str]:
    """(scheme://netloc, base path without its trailing slash, base query) of the connection's URL."""
    parts = urlsplit(base_url.strip())
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/"), parts.query


def upstream_url(*, base_url: str, path: str, query: str, drop: frozenset[str] = frozenset({"user_id"})) -> str:
    """`base_url` + `path` (see the module docstring) + the forwarded query. Raises PathRefused."""
    origin, base_path, base_query = base_parts(base_url)
    segments = safe_segments(path)
    suffix = "/" + "/".join(quote(segment, safe=_SEGMENT_SAFE) for segment in segments) if segments else ""
    fixed = {_name(piece) for piece in base_query.split("&") if piece}
    forwarded = [piece for piece in query.split("&") if piece and _name(piece) not in (drop | fixed)]
    query_text = "&".join([*([base_query] if base_query else []), *forwarded])
    return f"{origin}{base_path}{suffix}" + (f"?{query_text}" if query_text else "")


def within_base(url: str, *, base_url: str) -> str | None:
    """The path below the base path when `url` (absolute, or relative to the base URL's origin) stays on the
    connection's origin and under its base path; None otherwise. Used for an upstream's `Location`."""
    origin, base_path, _ = base_parts(base_url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if "\\" in url or any(ord(c) < 0x21 for c in url):
        return None
    if parts.scheme or parts.netloc:
        if f"{parts.scheme.lower()}://{parts.netloc.lower()}" != origin.lower():
            return None
    elif not parts.path.startswith("/"):
        return None  # relative to the current document: not worth resolving, dropped
    path = parts.path
    if path == base_path or path.startswith(base_path + "/"):
        rest = path[len(base_path) + 1:]
    else:
        return None
    try:
        safe_segments(unquote(rest))
    except PathRefused:
        return None
    return rest + (f"?{parts.query}" if parts.query else "")


def _name(piece: str) -> str:
    return unquote_plus(piece.partition("=")[0])
