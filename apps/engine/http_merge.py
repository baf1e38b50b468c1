"""The parameterized merge of an `http` node: connection < node config < run-input layer.

- `headers`, `params`, `data` merge key by key (headers case-insensitively: `authorization` and
  `Authorization` are the same header). A layer may drop a less specific key by setting it to null.
- `url` and `method`: the most specific non-empty value wins. A URL without a scheme (`/invoices`,
  `?page=2`, `items`) is resolved against the less specific one with RFC 3986 rules (`urljoin`).
- `{name}` placeholders in the URL are filled from `parameters` (node config < inputs), URL-quoted with
  nothing safe, so a value cannot add a path segment, a query or a host. For an `http` connection only the
  names it declares in `parameters` are filled. With a connection on board no placeholder may sit in the
  scheme, userinfo, host or port (`https://{host}/`, `https://api.x.com:{port}/`): `origin_not_allowed`.
- Origin pinning: when the node carries a connection, the origin (scheme, host, port) is fixed by the
  connection's `url`. A credential-bearing connection (`http_api_key`, `oauth2`, an `http` one with any
  header/param/data) without a `url` (a row saved before the rule) is `origin_not_allowed`: the node must
  not choose where its secrets go. Only an `http` connection that carries nothing secret lets the node
  config's `url` fix the origin (unless its origin part is itself a template: then a caller could choose
  it), filled with node-config parameters only. A final URL with another origin, or a URL that only the
  run-input layer provides, is `origin_not_allowed`: credentials never follow a caller-chosen URL.
- Secrets cannot be overridden: every header, param and data key the connection sets (all are secret,
  SPEC §12; headers compared case-insensitively) keeps the connection's value; the `http_api_key` header
  and the OAuth2 bearer token are applied after every layer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from .connection_types import HTTP_METHODS, carries_credentials
from .errors import NodeError
from .origins import http_origin, origin_is_templated, placeholder_in_origin
from .types import ResolvedConnection

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
Origin = tuple[str, str, int]


@dataclass
class PreparedRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    # The origin credentials are pinned to (None when the node has no connection): redirects must stay on it.
    pinned_origin: Origin | None = None


def _is_absolute(url: str) -> bool:
    return bool(urlsplit(url).scheme)


def _mapping(layer: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = layer.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise NodeError("invalid_config", f"{where}.{key} must be an object")
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _merge(layers: list[Mapping[str, Any]], protected: set[str], *, fold_case: bool = False) -> dict[str, Any]:
    """Key-by-key merge, later layers win, except on `protected` keys (set by the first layer only)."""
    merged: dict[str, tuple[str, Any]] = {}
    for index, layer in enumerate(layers):
        for key, value in layer.items():
            norm = key.lower() if fold_case else key
            if index > 0 and norm in protected:
                continue
            if value is None:
                merged.pop(norm, None)
            else:
                merged[norm] = (key, value)
    return {key: value for key, value in merged.values()}


def _connection_layer(connection: ResolvedConnection | None) -> dict[str, Any]:
    if connection is None:
        return {}
    config = connection.config
    if connection.type == "http":
        return {key: config.get(key) for key in ("url", "method", "headers", "params", "data")}
    if connection.type in ("http_api_key", "oauth2"):
        return {"url": config.get("url")}
    raise NodeError("invalid_connection", f"A {connection.type} connection cannot be used by an http node")


def _fill_parameters(url: str, values: Mapping[str, Any], allowed: set[str] | None, declared: set[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if (allowed is None or name in allowed) and values.get(name) is not None:
            return quote(_text(values[name]), safe="")
        if name in declared:
            raise NodeError("missing_parameter", f"No value for URL parameter '{name}'")
        return match.group(0)

    return _PLACEHOLDER.sub(replace, url) if "{" in url else url


def prepare_http_request(
    *,
    connection: ResolvedConnection | None,
    config: Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
    raw_url: Any = None,
) -> PreparedRequest:
    """Merge the three layers into one request, or raise NodeError.

    `config` and `inputs` are already rendered; `raw_url` is the node config's URL before rendering (used
    only to tell whether its origin came from a template).
    """
    if inputs is None:
        inputs = {}
    if not isinstance(inputs, Mapping):
        raise NodeError("invalid_config", "config.inputs must be an object")
    base = _connection_layer(connection)
    layers = [(base, "connection"), (config, "config"), (inputs, "inputs")]

    method = "GET"
    for layer, _ in layers:
        if layer.get("method"):
            method = str(layer["method"]).upper()
    if method not in HTTP_METHODS:
        raise NodeError("invalid_config", f"Unsupported method {method!r}")

    url: str | None = None
    for layer, where in layers:
        value = layer.get("url")
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            raise NodeError("invalid_config", f"{where}.url must be a string")
        if url is None:
            if not _is_absolute(value):
                raise NodeError("invalid_url", f"Relative URL {value!r} with no base URL to resolve it against")
            url = value.strip()
        else:
            url = urljoin(url, value.strip())
    if url is None:
        raise NodeError("no_url", "No url provided")

    declared: set[str] = set()
    allowed: set[str] | None = None  # None: any name
    if connection is not None and connection.type == "http":
        declared = {str(name) for name in connection.config.get("parameters") or ()}
        allowed = declared
    config_parameters = _mapping(config, "parameters", "config")
    parameters = {**config_parameters, **_mapping(inputs, "parameters", "inputs")}
    if connection is not None and placeholder_in_origin(url):
        raise NodeError(
            "origin_not_allowed",
            "This node sends a connection's credentials, so no {placeholder} may choose the scheme, host or port "
            "of its URL",
        )
    url = _fill_parameters(url, parameters, allowed, declared)
    final_origin = http_origin(url)

    pinned: Origin | None = None
    if connection is not None:
        trusted = base.get("url") or None
        if trusted is None and carries_credentials(connection.type, connection.config):
            raise NodeError(
                "origin_not_allowed",
                "This connection carries credentials but fixes no url; add the url to the connection "
                "(the node cannot choose where its credentials go)",
            )
        node_url = config.get("url")
        if trusted is None and isinstance(node_url, str) and _is_absolute(node_url):
            if not origin_is_templated(raw_url if raw_url is not None else node_url):
                trusted = node_url
        if not trusted:
            raise NodeError(
                "origin_not_allowed",
                "This node sends a connection's credentials, so its URL must come from the connection or the "
                "node config, not from run input",
            )
        if placeholder_in_origin(str(trusted)):
            raise NodeError(
                "origin_not_allowed",
                "This node sends a connection's credentials, so no {placeholder} may choose the scheme, host or "
                "port of its URL",
            )
        # The trusted layers only: run input must never take part in choosing where credentials go.
        pinned = http_origin(_fill_parameters(str(trusted), config_parameters, allowed, set()))
        if final_origin != pinned:
            raise NodeError(
                "origin_not_allowed",
                f"Credentials of this connection may only be sent to {pinned[0]}://{pinned[1]}:{pinned[2]}",
            )

    protected = {"headers": set(), "params": set(), "data": set()}
    for key in protected:
        for name in _mapping(base, key, "connection"):
            protected[key].add(name.lower() if key == "headers" else name)

    header_layers = [_mapping(layer, "headers", where) for layer, where in layers]
    headers = {k: _text(v) for k, v in _merge(header_layers, protected["headers"], fold_case=True).items()}
    params = _merge([_mapping(layer, "params", where) for layer, where in layers], protected["params"])
    data = _merge([_mapping(layer, "data", where) for layer, where in layers], protected["data"])

    if connection is not None:
        auth = _auth_header(connection)
        if auth is not None:
            name, value = auth
            for existing in [k for k in headers if k.lower() == name.lower()]:
                del headers[existing]
            headers[name] = value

    body = data if (data and method in BODY_METHODS) else None
    return PreparedRequest(method=method, url=url, headers=headers, params=params, json=body, pinned_origin=pinned)


def _auth_header(connection: ResolvedConnection) -> tuple[str, str] | None:
    config = connection.config
    if connection.type == "http_api_key":
        api_key = config.get("api_key")
        if not api_key:
            raise NodeError("invalid_connection", "The connection has no API key")
        prefix = config.get("prefix")
        return (config.get("header") or "Authorization"), f"{'Bearer ' if prefix is None else prefix}{api_key}"
    if connection.type == "oauth2":
        token = config.get("access_token")
        if not token:
            raise NodeError("invalid_connection", "The OAuth2 connection has no access token yet")
        return "Authorization", f"Bearer {token}"
    return None


DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"


def openai_base_url(connection: ResolvedConnection) -> str:
    """An `openai` connection's base URL without a trailing slash (the type's default when unset)."""
    return str(connection.config.get("base_url") or DEFAULT_OPENAI_BASE_URL).rstrip("/")


def openai_auth_headers(connection: ResolvedConnection) -> dict[str, str]:
    """How an `openai` connection's credentials apply to a request: the one place (llm node, link-time probe)."""
    config = connection.config
    api_key = config.get("api_key")
    if not api_key:
        raise NodeError("invalid_connection", "The connection has no API key")
    headers = {"Authorization": f"Bearer {api_key}"}
    if config.get("organization"):
        headers["OpenAI-Organization"] = str(config["organization"])
    return headers
