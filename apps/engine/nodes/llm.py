"""The `llm` node: one OpenAI-compatible chat completion, streamed as `llm.delta` events when the run streams."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from ..errors import NodeError, RunCanceled
from ..http_merge import openai_auth_headers, openai_base_url
from ..state import NodeEnv
from ..templating import render
from .base import ConfigKey, Connection, Kind, NodeType


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


def run(env: NodeEnv) -> Any:
    connection = env.require_connection(*NODE.connection_types)
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

    headers = openai_auth_headers(connection)
    base_url = openai_base_url(connection)
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


NODE = NodeType(
    name="llm",
    run=run,
    config=(
        ConfigKey("model", Kind.TEXT, required=True),
        ConfigKey("prompt", Kind.TEXT, required=True),
        ConfigKey("system"),
        ConfigKey("temperature"),
        ConfigKey("max_tokens"),
    ),
    connection=Connection.REQUIRED,
    connection_types=("openai",),
)
