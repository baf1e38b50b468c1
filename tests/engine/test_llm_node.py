"""llm nodes against an OpenAI-compatible stub on loopback."""

import base64

import pytest

from apps.engine import RunContext, RunOptions, execute
from apps.engine.connection_types import MASK

from .conftest import FakeResolver, conn, workflow

KEY = "sk-test-123456"


def llm_workflow(**config):
    return workflow(
        {"id": "chat", "type": "llm", "connection": {"id": "oa"},
         "config": {"model": "gpt-test", "prompt": "Say hi to {{ input.name }}", **config}},
        fields={"name": {"type": "string"}},
        output={"text": "{{ nodes.chat.output.text }}"},
    )


def openai_resolver(server, **extra):
    return FakeResolver({"oa": conn("oa", "openai", api_key=KEY, base_url=server.base_url + "/v1", **extra)})


def test_it_calls_chat_completions_with_the_key_and_returns_text_and_usage(run, openai_server):
    definition = llm_workflow(system="Be brief", temperature=0.2, max_tokens=50)
    result, events = run(definition, {"name": "Ada"}, resolver=openai_resolver(openai_server, organization="org-1"))
    assert result.status == "completed", result.nodes["chat"].error
    assert result.output == {"text": "Hello, world"}
    assert result.nodes["chat"].output["usage"]["total_tokens"] == 6
    sent = openai_server.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == f"Bearer {KEY}"
    assert sent["headers"]["OpenAI-Organization"] == "org-1"
    assert sent["body"] == {"model": "gpt-test", "temperature": 0.2, "max_tokens": 50, "messages": [
        {"role": "system", "content": "Be brief"}, {"role": "user", "content": "Say hi to Ada"}]}
    assert not any(t == "llm.delta" for t, _ in events)


def test_streaming_emits_each_delta_as_an_event(run, openai_server):
    result, events = run(llm_workflow(), {"name": "Ada"}, resolver=openai_resolver(openai_server), stream=True)
    assert result.status == "completed", result.nodes["chat"].error
    assert result.output == {"text": "Hello, world"}
    assert openai_server.requests[0]["body"]["stream"] is True
    deltas = [d for t, d in events if t == "llm.delta"]
    assert deltas == [{"node_id": "chat", "content": c} for c in ("Hel", "lo, ", "world")]
    order = [t for t, d in events if d.get("node_id") == "chat"]
    assert order == ["node.started", "llm.delta", "llm.delta", "llm.delta", "node.completed"]


def test_cancel_during_a_stream_stops_the_run(openai_server, http_client):
    openai_server.delay = 0.05
    events = []

    def is_canceled():  # the caller cancels once it has seen the first delta
        return any(t == "llm.delta" for t, _ in events)

    result = execute(
        definition=llm_workflow(), run_input={"name": "x"}, resolver=openai_resolver(openai_server),
        context=RunContext(), options=RunOptions(stream=True), http_client=http_client,
        on_event=lambda t, d: events.append((t, d)), is_canceled=is_canceled, allow_private_network=True,
    )
    assert result.status == "canceled"
    assert [d["content"] for t, d in events if t == "llm.delta"] == ["Hel"]
    assert result.nodes["chat"].error["type"] == "canceled"
    assert result.nodes["output"].status == "skipped"
    assert ("node.skipped", {"node_id": "output", "type": "output", "reason": "canceled"}) in events


def test_an_api_error_is_a_node_failure_without_the_key(run, openai_server):
    wrong = conn("oa", "openai", api_key="sk-wrong-999999", base_url=openai_server.base_url + "/v1")
    resolver = FakeResolver({"oa": wrong})
    result, events = run(llm_workflow(), {"name": "x"}, resolver=resolver)
    error = result.nodes["chat"].error
    assert error["type"] == "http_error"
    assert error["status_code"] == 401
    assert "Incorrect API key" in error["message"]
    assert "sk-wrong-999999" not in repr(result.to_dict()) + repr(events)


def test_model_and_prompt_are_required(run, openai_server):
    result, _ = run(llm_workflow(model=""), {"name": "x"}, resolver=openai_resolver(openai_server))
    assert result.nodes["chat"].error["type"] == "invalid_config"


def test_the_llm_base_url_passes_the_ssrf_guard(run):
    from apps.engine import make_http_client

    metadata = FakeResolver({"oa": conn("oa", "openai", api_key=KEY, base_url="http://169.254.169.254/v1")})
    with make_http_client(allow_private=False) as guarded:
        result, _ = run(llm_workflow(), {"name": "x"}, resolver=metadata, client=guarded)
    assert result.nodes["chat"].error["type"] == "target_not_allowed"


# --- a secret split across deltas (security review H3) ---------------------------------------------------


def _stream(run, server, monkeypatch, chunks):
    monkeypatch.setattr(server.RequestHandlerClass, "chunks", tuple(chunks))
    result, events = run(llm_workflow(), {"name": "Ada"}, resolver=openai_resolver(server), stream=True)
    assert result.status == "completed", result.nodes["chat"].error
    return result, [d["content"] for t, d in events if t == "llm.delta"]


@pytest.mark.parametrize("chunks", [
    ("the key is sk-test-", "123456", " ok"),
    ("the key is s", "k", "-", "t", "e", "s", "t", "-", "1", "2", "3", "4", "5", "6", " ok"),
    ("key: sk-test-123", "456"),  # the secret ends the stream: the held tail is flushed masked
    ("b64: " + base64.b64encode(b"Authorization: Bearer sk-test-123456").decode()[:30],
     base64.b64encode(b"Authorization: Bearer sk-test-123456").decode()[30:], " done"),
])
def test_a_secret_split_across_deltas_never_shows_in_a_delta(run, openai_server, monkeypatch, chunks):
    result, deltas = _stream(run, openai_server, monkeypatch, chunks)
    joined = "".join(deltas)
    assert not any(KEY in d for d in deltas)
    assert KEY not in joined and "c2stdGVzdC0xMjM0NTY" not in joined
    assert MASK in joined
    assert joined == result.output["text"]  # the deltas add up to the (masked) final text
    assert KEY not in str(result.output)


def test_ordinary_deltas_keep_their_granularity(run, openai_server, monkeypatch):
    _, deltas = _stream(run, openai_server, monkeypatch, ["Your ", "latest ", "invoice ", "is ", "paid."])
    assert deltas == ["Your ", "latest ", "invoice ", "is ", "paid."]
