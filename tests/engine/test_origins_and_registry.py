"""The one origin module and the one node-type registry (issue 10)."""

import pytest

from apps.engine import NodeError, connection_types, origins
from apps.engine.definition import check_definition, check_run_input, topological_order
from apps.engine.nodes import CONNECTION_ALLOWED, CONNECTION_REQUIRED, INPUT_TYPES, NODE_TYPES, REGISTRY, RUNNERS


def test_one_host_rule_a_trailing_dot_is_another_origin():
    assert origins.origin("https://api.example.com./x") != origins.origin("https://api.example.com/x")
    assert origins.http_origin("https://api.example.com./x") != origins.http_origin("https://api.example.com/x")
    assert origins.browser_origin("https://a.example.com./") != origins.browser_origin("https://a.example.com/")


def test_default_ports_and_case_compare_equal_everywhere():
    for parse in (origins.origin, origins.http_origin, origins.browser_origin):
        assert parse("HTTPS://API.Example.com:443/a") == parse("https://api.example.com/b")


def test_browser_origin_refuses_what_browsers_read_differently():
    for url in ("https://evil.example\\@good.example/", "https://user@good.example/", "https://good.example/ x",
                "javascript:alert(1)", "/relative", "http://[::1"):
        assert origins.browser_origin(url) is None


def test_http_origin_refuses_non_http_urls():
    with pytest.raises(NodeError):
        origins.http_origin("ftp://example.com/")


def test_the_origin_part_of_a_raw_url():
    assert origins.placeholder_in_origin("https://{host}/x") and not origins.placeholder_in_origin("https://h/{id}")
    assert origins.origin_is_templated("https://{{ input.host }}/x")
    assert not origins.origin_is_templated("/items/{{ input.id }}")
    assert origins.normalize_origin("https://Shop.Example.com/after?x=1") == "https://shop.example.com"
    assert origins.normalize_origin("javascript:alert(1)") is None


def test_the_registry_is_the_one_source_of_node_types():
    assert NODE_TYPES == ("input", "output", "http", "template", "llm", "sql")
    assert set(RUNNERS) == set(REGISTRY) and all(RUNNERS[n] is REGISTRY[n].run for n in REGISTRY)
    assert CONNECTION_REQUIRED == ("llm", "sql") and CONNECTION_ALLOWED == ("http", "llm", "sql")
    assert tuple(INPUT_TYPES) == ("string", "number", "integer", "boolean", "object", "array")
    # Every connection type serves at least one node type, and every accepted type exists.
    served = {ctype for node_type in REGISTRY.values() for ctype in node_type.connection_types}
    assert served == set(connection_types.REGISTRY)


def test_shape_validation_needs_no_database():
    shape = check_definition({"nodes": [{"id": "input", "type": "input"}, {"id": "q", "type": "sql",
                                                                           "depends_on": ["input"]}]})
    assert shape.errors == {
        "nodes.1.config.query": ["this field is required"],
        "nodes.1.connection": ["a sql node needs a connection"],
        "nodes": ["exactly one 'output' node is required (found 0)"],
    }
    assert check_definition([]).unreadable


def test_the_cycle_message_names_every_cycle_and_nothing_downstream():
    definition = {"nodes": [
        {"id": "input", "type": "input"},
        {"id": "a", "type": "template", "depends_on": ["b"], "config": {"template": "x"}},
        {"id": "b", "type": "template", "depends_on": ["a"], "config": {"template": "x"}},
        {"id": "c", "type": "template", "depends_on": ["d"], "config": {"template": "x"}},
        {"id": "d", "type": "template", "depends_on": ["c"], "config": {"template": "x"}},
        {"id": "output", "type": "output", "depends_on": ["a", "c"], "fields": {"o": "x"}},
    ]}
    assert check_definition(definition).errors == {"nodes": ["depends_on forms a cycle through: a, b, c, d"]}


def test_topological_order_is_by_generation_in_definition_order():
    assert topological_order({"z": [], "b": ["z"], "a": [], "c": ["a", "b"]}) == ["z", "a", "b", "c"]


def test_check_run_input_reads_the_input_node():
    definition = {"nodes": [{"id": "input", "type": "input", "fields": {"n": {"type": "integer", "required": True}}}]}
    assert check_run_input(definition, {"n": 1}) == {}
    assert check_run_input(definition, {"n": "1"}) == {"n": ["must be of type integer"]}
