"""Node runners: one function per node type, `runner(env) -> output`, raising NodeError on failure.

Runners receive already-masked outputs of upstream nodes through the template context, so a secret that
an upstream echoed can never be forwarded by a template to another server.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from .errors import NodeError, RunCanceled
from .http_merge import PreparedRequest, origin_of, prepare_http_request
from .netguard import checked_addresses
from .templating import render
from .types import ResolvedConnection

if TYPE_CHECKING:  # pragma: no cover
    from .executor import RunState

MAX_REDIRECTS = 5
INPUT_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


@dataclass
class NodeEnv:
    node: Mapping[str, Any]
    context: dict[str, Any]  # {"input": ..., "nodes": {id: {"output", "status", "error"}}}
    connection: ResolvedConnection | None
    run: RunState

    @property
    def id(self) -> str:
        return self.node["id"]

    @property
    def config(self) -> Mapping[str, Any]:
        config = self.node.get("config")
        if config is None:
            return {}
        if not isinstance(config, Mapping):
            raise NodeError("invalid_config", "config must be an object")
        return config

    def require_connection(self, *types: str) -> ResolvedConnection:
        if self.connection is None:
            raise NodeError("invalid_connection", f"A {self.node.get('type')} node needs a connection")
        if self.connection.type not in types:
            raise NodeError(
                "invalid_connection",
                f"A {self.node.get('type')} node cannot use a {self.connection.type} connection",
            )
        return self.connection


# --- input / output / template --------------------------------------------------------------------


def validate_input(fields: Any, run_input: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Check run input against the input node's `fields`. Returns (value, errors by field).

    Undeclared fields are refused when the node declares fields (a typo should not pass silently); optional
    fields that are absent are present as their `default` or None, so templates can test them.
    """
    if not isinstance(run_input, Mapping):
        return {}, {"input": ["must be an object"]}
    if not isinstance(fields, Mapping) or not fields:
        return dict(run_input), {}
    errors: dict[str, list[str]] = {}
    value: dict[str, Any] = {}
    for name, spec in fields.items():
        spec = spec if isinstance(spec, Mapping) else {}
        if name not in run_input or run_input[name] is None:
            if spec.get("required"):
                errors.setdefault(name, []).append("this field is required")
            value[name] = spec.get("default")
            continue
        item = run_input[name]
        kind = spec.get("type")
        check = INPUT_TYPES.get(kind) if kind else None
        if check is not None and not check(item):
            errors.setdefault(name, []).append(f"must be of type {kind}")
        value[name] = item
    for name in run_input:
        if name not in fields:
            errors.setdefault(name, []).append("unknown field")
    return value, errors


def run_input_node(env: NodeEnv) -> Any:
    return env.run.input_value


def run_output_node(env: NodeEnv) -> Any:
    fields = env.node.get("fields") or {}
    if not isinstance(fields, Mapping):
        raise NodeError("invalid_config", "fields must be an object")
    return {name: render(template, env.context) for name, template in fields.items()}


def run_template_node(env: NodeEnv) -> Any:
    if "template" not in env.config:
        raise NodeError("invalid_config", "config.template is required")
    # A single `{{ expression }}` (or a JSON structure of templates) keeps its native value under "text".
    return {"text": render(env.config["template"], env.context)}


# --- http -------------------------------------------------------------------------------------------


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
        if origin_of(str(next_request.url)) != prepared.pinned_origin:
            raise NodeError("redirect_not_allowed", "The upstream redirected to another origin; not followed")
        response = client.send(next_request, follow_redirects=False)
    if response.next_request is not None:
        response.close()
        raise NodeError("too_many_redirects", f"More than {MAX_REDIRECTS} redirects")
    return response


def run_http_node(env: NodeEnv) -> Any:
    raw = env.config
    if env.connection is not None:
        env.require_connection("http", "http_api_key", "oauth2")
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


# --- llm --------------------------------------------------------------------------------------------


def _llm_error(response: httpx.Response) -> NodeError:
    message = f"The LLM API answered {response.status_code}"
    try:
        detail = response.json().get("error")
        if isinstance(detail, Mapping) and detail.get("message"):
            message += f": {detail['message']}"
        elif isinstance(detail, str):
            message += f": {detail}"
    except (ValueError, AttributeError):
        pass
    return NodeError("http_error", message, status_code=response.status_code)


def run_llm_node(env: NodeEnv) -> Any:
    connection = env.require_connection("openai")
    config = render(dict(env.config), env.context)
    model = config.get("model")
    prompt = config.get("prompt")
    if not model or not isinstance(model, str):
        raise NodeError("invalid_config", "config.model is required")
    if prompt is None or prompt == "":
        raise NodeError("invalid_config", "config.prompt is required")
    if not isinstance(prompt, str):
        prompt = json.dumps(prompt, default=str)
    messages = []
    if config.get("system"):
        system = config["system"]
        messages.append({"role": "system", "content": system if isinstance(system, str) else json.dumps(system)})
    messages.append({"role": "user", "content": prompt})
    body: dict[str, Any] = {"model": model, "messages": messages}
    for key in ("temperature", "max_tokens"):
        if config.get(key) is not None:
            body[key] = config[key]

    api_key = connection.config.get("api_key")
    if not api_key:
        raise NodeError("invalid_connection", "The connection has no API key")
    base_url = str(connection.config.get("base_url") or "https://api.openai.com/v1").rstrip("/")
    headers = {"Authorization": f"Bearer {api_key}"}
    if connection.config.get("organization"):
        headers["OpenAI-Organization"] = str(connection.config["organization"])
    client = env.run.http_client
    url = f"{base_url}/chat/completions"

    if not env.run.options.stream:
        response = client.post(url, json=body, headers=headers, follow_redirects=False)
        if not response.is_success:
            raise _llm_error(response)
        try:
            data = response.json()
            text = data["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise NodeError("llm_error", "The LLM API answered with an unexpected body") from exc
        return {"text": text, "usage": data.get("usage")}

    body["stream"] = True
    parts: list[str] = []
    usage = None
    # Deltas are masked as one text: a secret split over two chunks must not go out half in each.
    stream_masker = env.run.masker.stream()

    def emit_delta(content: str) -> None:
        if content:
            env.run.emit("llm.delta", {"node_id": env.id, "content": content}, masked=True)

    with client.stream("POST", url, json=body, headers=headers, follow_redirects=False) as response:
        if not response.is_success:
            response.read()
            raise _llm_error(response)
        for line in response.iter_lines():
            if env.run.canceled():
                raise RunCanceled()
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            try:
                chunk = json.loads(payload)
            except ValueError:
                continue
            if not isinstance(chunk, Mapping):
                continue
            if chunk.get("error"):
                error = chunk["error"]
                message = error.get("message") if isinstance(error, Mapping) else str(error)
                raise NodeError("llm_error", f"The LLM API reported an error: {message}")
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                content = ((choice or {}).get("delta") or {}).get("content")
                if isinstance(content, str) and content:
                    parts.append(content)
                    emit_delta(stream_masker.feed(content))
    emit_delta(stream_masker.flush())
    return {"text": "".join(parts), "usage": usage}


# --- sql --------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    return str(value)


def run_sql_node(env: NodeEnv) -> Any:
    connection = env.require_connection("postgresql")
    query = env.config.get("query")
    if not query or not isinstance(query, str):
        raise NodeError("invalid_config", "config.query is required")
    # The query text is never templated (that would be SQL injection by design); values go through params.
    params = render(env.config.get("params"), env.context)
    if params is not None and not isinstance(params, (Mapping, list)):
        raise NodeError("invalid_config", "config.params must be an object (named) or a list (positional)")

    cfg = connection.config
    host = str(cfg.get("host") or "")
    port = int(cfg.get("port") or 5432)
    kwargs: dict[str, Any] = {
        "host": host,
        "port": port,
        "dbname": cfg.get("database"),
        "user": cfg.get("user"),
        "password": cfg.get("password") or None,
        "sslmode": cfg.get("sslmode") or "prefer",
        "connect_timeout": 10,
        # Every transaction of the session starts read-only, so even a statement that ends ours (COMMIT)
        # cannot open a writable one.
        "options": "-c statement_timeout=30000 -c default_transaction_read_only=on",
    }
    if not env.run.allow_private_network:
        # Connect to the checked address (hostaddr); `host` still serves TLS verification.
        kwargs["hostaddr"] = checked_addresses(host, port, allow_private=False)[0]

    connect = env.run.db_connect
    if connect is None:
        import psycopg  # imported on first use: most runs never touch SQL

        connect = psycopg.connect
    from psycopg import Error as PsycopgError
    from psycopg.rows import dict_row

    try:
        conn = connect(**kwargs)
    except PsycopgError as exc:
        raise NodeError("sql_error", f"Could not connect to the database: {exc}".strip()) from exc
    try:
        conn.read_only = True  # BEGIN READ ONLY: writes fail in the server, whatever the query says
        with conn.cursor(row_factory=dict_row) as cursor:
            # prepare=True: always the extended protocol (Parse/Bind/Execute), which takes exactly one
            # statement. Without params psycopg would use the simple protocol, which runs
            # `commit; insert ...` as two statements, the second outside our read-only transaction.
            # Empty params count as none, so a literal `%` needs no escaping either way.
            cursor.execute(query, params or None, prepare=True)
            rows = cursor.fetchall() if cursor.description else []
            rowcount = cursor.rowcount
        conn.rollback()
    except PsycopgError as exc:
        raise NodeError("sql_error", str(exc).strip()) from exc
    finally:
        conn.close()
    return {"rows": [_jsonable(row) for row in rows], "rowcount": rowcount}


RUNNERS: dict[str, Callable[[NodeEnv], Any]] = {
    "input": run_input_node,
    "output": run_output_node,
    "template": run_template_node,
    "http": run_http_node,
    "llm": run_llm_node,
    "sql": run_sql_node,
}
