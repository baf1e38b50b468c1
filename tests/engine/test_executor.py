"""The executor: resolution, input validation, DAG scheduling, options, cancel, events."""

import threading

from apps.engine import RunContext, RunOptions, execute
from apps.engine.connection_types import MASK
from apps.engine.nodes import RUNNERS
from tests.support.http_stub import HttpStub, StubResponse

from .conftest import FakeResolver, conn, workflow


def test_it_runs_a_template_workflow_and_returns_the_output_mapping(run):
    definition = workflow(
        {"id": "greet", "type": "template", "config": {"template": "Hello {{ input.name }}!"}},
        {"id": "data", "type": "template", "config": {"template": "{{ input.tags }}"}},
        fields={"name": {"type": "string", "required": True}, "tags": {"type": "array"}},
        output={"text": "{{ nodes.greet.output.text }}", "tags": "{{ nodes.data.output.text }}",
                "count": "{{ input.tags | length }}"},
    )
    result, events = run(definition, {"name": "Ada", "tags": ["a", "b"]})
    assert result.status == "completed"
    assert result.error is None
    assert result.output == {"text": "Hello Ada!", "tags": ["a", "b"], "count": 2}
    assert [e for e, _ in events].count("node.completed") == 4
    assert all(r.status == "success" for r in result.nodes.values())
    assert list(result.nodes) == ["input", "greet", "data", "output"]


def test_template_node_accepts_a_json_structure(run):
    definition = workflow({"id": "t", "type": "template", "config": {"template": {"a": "{{ input.x }}", "b": [1]}}},
                          fields={"x": {"type": "number"}}, output={"o": "{{ nodes.t.output.text }}"})
    result, _ = run(definition, {"x": 1.5})
    assert result.output == {"o": {"a": 1.5, "b": [1]}}


def test_it_resolves_credentials_once_before_any_node_with_every_reference(run, echo_server):
    resolver = FakeResolver({"c1": conn("c1", "http", url=echo_server.base_url)},
                            {"r1": conn("c9", "http", owner="end_user", url=echo_server.base_url)})
    definition = workflow(
        {"id": "a", "type": "http", "connection": {"id": "c1"}, "config": {"url": "/a"}},
        {"id": "b", "type": "http", "connection": {"requirement": "r1"}, "config": {"url": "/b"}},
        {"id": "c", "type": "http", "connection": {"id": "c1"}, "config": {"url": "/c"}},
    )
    result, _ = run(definition, resolver=resolver)
    assert result.status == "completed"
    assert resolver.resolve_calls == [{"connection_ids": ["c1"], "requirement_ids": ["r1"], "app_id": "app-1",
                                      "user_id": "alice", "run_id": "run-1"}]
    assert result.nodes["b"].connection == {"connection_id": "c9", "owner": "end_user", "user_id": None,
                                            "requirement_id": None}


def test_unsatisfied_requirements_fail_the_run_before_any_node(run):
    unsatisfied = [{"id": "r1", "name": "billing", "title": "Billing account"}]
    resolver = FakeResolver(unsatisfied=unsatisfied)
    definition = workflow({"id": "a", "type": "http", "connection": {"requirement": "r1"}, "config": {"url": "/"}})
    result, events = run(definition, resolver=resolver)
    assert result.status == "failed"
    assert result.error["code"] == "requirements_unsatisfied"
    assert result.error["details"] == {"unsatisfied": unsatisfied}
    assert result.nodes == {}
    assert events == []


def test_it_validates_the_input_against_the_input_fields(run):
    fields = {"q": {"type": "string", "required": True}, "n": {"type": "integer"}, "f": {"type": "number"},
              "b": {"type": "boolean"}, "o": {"type": "object"}, "a": {"type": "array"}}
    definition = workflow(fields=fields, output={"q": "{{ input.q }}"})
    bad = {"n": 1.5, "f": True, "b": "yes", "o": [], "a": {}, "extra": 1}
    result, events = run(definition, bad)
    assert result.status == "failed"
    assert result.error["code"] == "invalid_input"
    assert result.error["details"] == {
        "q": ["this field is required"], "n": ["must be of type integer"], "f": ["must be of type number"],
        "b": ["must be of type boolean"], "o": ["must be of type object"], "a": ["must be of type array"],
        "extra": ["unknown field"],
    }
    assert events == []
    ok, _ = run(definition, {"q": "x", "n": 1, "f": 2, "b": False, "o": {}, "a": []})
    assert ok.status == "completed"
    not_object, _ = run(definition, ["x"])
    assert not_object.error["details"] == {"input": ["must be an object"]}


def test_the_input_node_output_includes_files_and_absent_optionals(run):
    files = [{"id": "f1", "name": "a.txt", "size": 3, "mime_type": "text/plain"}]
    definition = workflow(fields={"q": {"type": "string"}}, output={"all": "{{ nodes.input.output }}"})
    result, _ = run(definition, {}, files=files)
    assert result.output == {"all": {"q": None, "files": files}}


def test_a_failed_node_skips_its_dependants_only(run):
    definition = {"nodes": [
        {"id": "input", "type": "input"},
        {"id": "bad", "type": "template", "depends_on": ["input"], "config": {"template": "{{ input.nope }}"}},
        {"id": "after_bad", "type": "template", "depends_on": ["bad"], "config": {"template": "x"}},
        {"id": "after_after", "type": "template", "depends_on": ["after_bad"], "config": {"template": "x"}},
        {"id": "good", "type": "template", "depends_on": ["input"], "config": {"template": "ok"}},
        {"id": "output", "type": "output", "depends_on": ["good"], "fields": {"g": "{{ nodes.good.output.text }}"}},
    ]}
    result, events = run(definition)
    assert result.status == "completed"
    assert result.output == {"g": "ok"}
    bad = result.nodes["bad"]
    assert (bad.status, bad.output, bad.error["type"]) == ("failure", None, "template_error")
    assert "nope" in bad.error["message"]
    assert result.nodes["after_bad"].status == "skipped"
    assert result.nodes["after_after"].status == "skipped"
    assert result.nodes["good"].status == "success"
    skipped = [d["node_id"] for t, d in events if t == "node.skipped"]
    assert skipped == ["after_bad", "after_after"]
    failed = [d for t, d in events if t == "node.failed"]
    assert failed[0]["node_id"] == "bad" and failed[0]["error"]["type"] == "template_error"


def test_error_on_node_failure_fails_the_run(run):
    definition = workflow({"id": "bad", "type": "template", "config": {"template": "{{ input.nope }}"}})
    result, _ = run(definition, error_on_node_failure=True)
    assert result.status == "failed"
    assert result.error["code"] == "node_failed"
    assert result.error["message"].startswith("Node bad failed: ")
    assert result.error["details"] == {"node_id": "bad", "type": "template_error"}
    assert result.nodes["output"].status == "skipped"


def test_a_failure_that_skips_the_output_node_fails_the_run(run):
    definition = workflow(
        {"id": "bad", "type": "template", "config": {"template": "{{ input.nope }}"}},
        {"id": "after", "type": "template", "depends_on": ["bad"], "config": {"template": "x"}},
        output_deps=["after"],
    )
    result, events = run(definition)
    assert (result.status, result.output) == ("failed", None)
    assert result.error["code"] == "node_failed"
    assert (result.error["node_id"], result.error["type"]) == ("bad", "template_error")
    assert result.error["message"].startswith("Node bad failed: ")
    assert result.error["details"] == {"node_id": "bad", "type": "template_error"}
    assert [result.nodes[n].status for n in ("bad", "after", "output")] == ["failure", "skipped", "skipped"]
    assert [e for e, _ in events][-1] == "node.skipped"  # the caller emits run.failed


def test_a_failed_output_node_fails_the_run(run):
    definition = workflow(fields={"q": {"type": "string"}}, output={"broken": "{{ input.q.nope.deeper }}"})
    result, _ = run(definition, {"q": "x"})
    assert result.status == "failed"
    assert (result.error["code"], result.error["node_id"]) == ("node_failed", "output")


def test_last_node_output_does_not_hide_a_failure_that_skipped_the_output_node(run):
    definition = workflow(
        {"id": "good", "type": "template", "config": {"template": "fine"}},
        {"id": "bad", "type": "template", "config": {"template": "{{ input.nope }}"}},
    )
    result, _ = run(definition, last_node_output=True)
    assert (result.status, result.output, result.error["node_id"]) == ("failed", None, "bad")


def test_last_node_output_returns_the_last_finished_dependency_of_the_output_node(run):
    definition = workflow(
        {"id": "first", "type": "template", "config": {"template": "one"}},
        {"id": "second", "type": "template", "depends_on": ["first"],
         "config": {"template": "{{ nodes.first.output.text }}-two"}},
        output={"ignored": "yes"},
        output_deps=["second"],
    )
    result, _ = run(definition, last_node_output=True)
    assert result.output == {"text": "one-two"}
    plain, _ = run(definition)
    assert plain.output == {"ignored": "yes"}


def test_independent_branches_run_concurrently(run):
    """Both requests must be in flight at once: each waits at a two-party barrier before answering, so run
    one after the other the first would break the barrier (its timeout is a failure bound, not a measurement;
    the wall-clock figure lives in bench/micro.py)."""
    barrier = threading.Barrier(2, timeout=10)

    def meet(request):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return StubResponse(500, {"error": "ran alone"})
        return StubResponse(200, {"path": request.path})

    with HttpStub(meet) as stub:
        definition = workflow(
            {"id": "a", "type": "http", "config": {"url": stub.url + "/a"}},
            {"id": "b", "type": "http", "config": {"url": stub.url + "/b"}},
            output={"a": "{{ nodes.a.output.body.path }}", "b": "{{ nodes.b.output.body.path }}"},
        )
        result, _ = run(definition)
    assert result.output == {"a": "/a", "b": "/b"}, result


def test_cancel_between_nodes_skips_the_rest(run):
    checks = []

    def is_canceled():
        checks.append(1)
        return len(checks) > 2  # canceled after the second node started

    definition = workflow(
        {"id": "a", "type": "template", "config": {"template": "a"}},
        {"id": "b", "type": "template", "depends_on": ["a"], "config": {"template": "b"}},
        output_deps=["b"],
    )
    result, events = run(definition, is_canceled=is_canceled)
    assert result.status == "canceled"
    assert result.error["code"] == "canceled"
    assert [result.nodes[n].status for n in ("input", "a", "b", "output")] == ["success", "success", "skipped",
                                                                              "skipped"]
    assert ("node.started", {"node_id": "b", "type": "template"}) not in events


def test_an_exception_inside_a_node_becomes_a_masked_failure(run, echo_server, monkeypatch):
    secret = "very-secret-api-key-42"
    api = conn("c1", "http_api_key", url=echo_server.base_url, api_key=secret)

    def explode(env):
        raise ValueError(f"could not use {env.connection.config['api_key']} at all")

    monkeypatch.setitem(RUNNERS, "template", explode)
    definition = workflow({"id": "boom", "type": "template", "connection": {"id": "c1"}})
    result, events = run(definition, resolver=FakeResolver({"c1": api}), error_on_node_failure=True)
    assert result.status == "failed"
    message = f"ValueError: could not use {MASK} at all"
    assert result.nodes["boom"].error == {"type": "internal_error", "message": message}
    assert result.error["message"] == f"Node boom failed: ValueError: could not use {MASK} at all"
    assert secret not in repr(result.to_dict()) + repr(events)
    assert "Traceback" not in repr(result.to_dict())


def test_an_unknown_connection_reference_is_a_node_failure(run):
    definition = workflow({"id": "a", "type": "http", "connection": {"id": "ghost"}, "config": {"url": "/"}})
    result, _ = run(definition)
    assert result.nodes["a"].error["type"] == "connection_unavailable"


def test_a_connection_of_the_wrong_type_is_a_node_failure(run):
    resolver = FakeResolver({"pg": conn("pg", "postgresql", host="db", database="d", user="u")})
    definition = workflow({"id": "a", "type": "llm", "connection": {"id": "pg"},
                           "config": {"model": "m", "prompt": "p"}})
    result, _ = run(definition, resolver=resolver)
    assert result.nodes["a"].error["type"] == "invalid_connection"


def test_an_invalid_definition_fails_cleanly(run):
    cycle = {"nodes": [{"id": "a", "type": "template", "depends_on": ["b"]},
                       {"id": "b", "type": "template", "depends_on": ["a"]}]}
    for definition in (cycle, {"nodes": [{"id": "a", "type": "teleport"}]}, {}, {"nodes": [{"id": "a", "type": "input",
                       "depends_on": ["zzz"]}]}):
        result, _ = run(definition)
        assert result.status == "failed"
        assert result.error["code"] == "invalid_definition"


def test_events_are_masked_and_ordered_per_node(run, echo_server):
    api = conn("c1", "http_api_key", url=echo_server.base_url, api_key="event-secret-1234")
    definition = workflow({"id": "call", "type": "http", "connection": {"id": "c1"}, "config": {"url": "/"}})
    _, events = run(definition, resolver=FakeResolver({"c1": api}))
    types = [(t, d["node_id"]) for t, d in events]
    assert types == [("node.started", "input"), ("node.completed", "input"), ("node.started", "call"),
                     ("node.completed", "call"), ("node.started", "output"), ("node.completed", "output")]
    assert "event-secret-1234" not in repr(events)
    assert MASK in repr(events)


def test_a_one_http_node_run_completes_on_a_mock_transport():
    """Everything except the network: a mock transport answers instantly."""
    import httpx

    def answer(request):
        return httpx.Response(200, json={"ok": True})

    client = httpx.Client(transport=httpx.MockTransport(answer))
    api = conn("c1", "http_api_key", url="https://api.example.com", api_key="perf-secret-123456")
    resolver = FakeResolver({"c1": api})
    definition = workflow(
        {"id": "call", "type": "http", "connection": {"id": "c1"},
         "config": {"url": "/items", "params": {"q": "{{ input.q }}"}}},
        fields={"q": {"type": "string"}}, output={"body": "{{ nodes.call.output.body }}"},
    )

    def once():
        return execute(definition=definition, run_input={"q": "x"}, resolver=resolver, context=RunContext(),
                       options=RunOptions(), http_client=client, on_event=lambda t, d: None)

    # The overhead itself (< 1 ms over bare httpx) is measured by bench/micro.py, not asserted under load.
    result = once()
    assert result.status == "completed"
    assert result.output == {"body": {"ok": True}}
