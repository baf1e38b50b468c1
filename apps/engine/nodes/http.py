"""The `http` node: one request merged from connection < node config < run input (see http_merge.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from ..connection_types import HTTP_METHODS, REQUEST_MAPPINGS
from ..errors import NodeError, PathErrors
from ..http_merge import PreparedRequest, prepare_http_request
from ..origins import http_origin
from ..state import NodeEnv
from ..templating import render
from ..types import ResolvedConnection
from .base import ConfigKey, Connection, Kind, NodeType

MAX_REDIRECTS = 5


def _response_output(response: httpx.Response) -> dict[str, Any]:
    body: Any
    if "json" in response.headers.get("content-type", ""):
        try:
            body = response.json()
        except ValueError:
            body = response.text
    else:
        body = response.text
    return {"status_code": response.status_code, "headers": dict(response.headers), "body": body}


def send_prepared(client: httpx.Client, prepared: PreparedRequest, *, timeout: Any = None) -> httpx.Response:
    url = httpx.URL(prepared.url)
    if prepared.params:
        url = url.copy_merge_params(prepared.params)  # keep the URL's own query, params win per key
    extra = {} if timeout is None else {"timeout": timeout}
    request = client.build_request(prepared.method, url, headers=prepared.headers, json=prepared.json, **extra)
    if prepared.pinned_origin is None:
        return client.send(request)  # no credential on board: redirects follow (each hop SSRF-checked)
    # Credentials on board: httpx would forward a custom key header (X-Api-Key) to any redirect target, so
    # follow by hand and only within the pinned origin.
    response = client.send(request, follow_redirects=False)
    for _ in range(MAX_REDIRECTS):
        next_request = response.next_request
        if next_request is None:
            return response
        response.close()
        if http_origin(str(next_request.url)) != prepared.pinned_origin:
            raise NodeError("redirect_not_allowed", "The upstream redirected to another origin; not followed")
        response = client.send(next_request, follow_redirects=False)
    if response.next_request is not None:
        response.close()
        raise NodeError("too_many_redirects", f"More than {MAX_REDIRECTS} redirects")
    return response


def run(env: NodeEnv) -> Any:
    raw = env.config
    if env.connection is not None:
        env.require_connection(*NODE.connection_types)
    config = render({k: v for k, v in raw.items() if k != "inputs"}, env.context)
    inputs = render(raw.get("inputs"), env.context) if raw.get("inputs") is not None else {}
    timeout = config.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0):
        raise NodeError("invalid_config", "config.timeout must be a positive number of seconds")

    def attempt(connection: ResolvedConnection | None) -> httpx.Response:
        prepared = prepare_http_request(connection=connection, config=config, inputs=inputs, raw_url=raw.get("url"))
        return send_prepared(env.run.http_client, prepared, timeout=timeout)

    response = attempt(env.connection)
    if response.status_code == 401 and env.connection is not None:
        retry_with = env.run.unauthorized(env.connection)
        if retry_with is not None:
            env.connection = retry_with  # provenance follows the connection actually used
            response = attempt(retry_with)
            if response.status_code == 401:
                env.run.unauthorized(retry_with)  # the refreshed one failed too: let the resolver mark it
    output = _response_output(response)
    if config.get("raise_for_status", True) is not False and not response.is_success:
        raise NodeError(
            "http_error",
            f"The upstream answered {response.status_code} {response.reason_phrase}".rstrip(),
            status_code=response.status_code,
        )
    return output


def check_method(node: Mapping[str, Any], config: Mapping[str, Any], path: str, errors: PathErrors) -> None:
    method = config.get("method")
    if method is not None and str(method).upper() not in HTTP_METHODS:
        errors.add(f"{path}.config.method", f"must be one of {', '.join(HTTP_METHODS)}")


NODE = NodeType(
    name="http",
    run=run,
    config=(
        ConfigKey("url"),
        ConfigKey("method"),
        *(ConfigKey(key, Kind.MAPPING) for key in REQUEST_MAPPINGS),
        ConfigKey("parameters"),
        ConfigKey("inputs"),
        ConfigKey("timeout"),
        ConfigKey("raise_for_status"),
    ),
    connection=Connection.OPTIONAL,
    connection_types=("http", "http_api_key", "oauth2"),
    extra_check=check_method,
)
