"""The template sandbox (security review L4): no mutation of the context, no huge `*` / `**` results."""

import time

import pytest
from jinja2 import TemplateError

from apps.engine import render

from .conftest import workflow

CTX = {"input": {"name": "Ada", "things": [1, 2]}, "nodes": {}}


def template_node(node_id, template, **extra):
    return {"id": node_id, "type": "template", "config": {"template": template}, **extra}


@pytest.mark.parametrize("template", [
    "{{ input.update({'a': 1}) }}",
    "{{ input.things.append(3) }}",
    "{{ input.pop('name') }}",
    "{% set _ = input.setdefault('x', 1) %}",
    "{{ input.things.extend([3]) or input.things }}",
])
def test_the_context_cannot_be_mutated(template):
    context = {"input": {"name": "Ada", "things": [1, 2]}, "nodes": {}}
    with pytest.raises(TemplateError):
        render(template, context)
    assert context == {"input": {"name": "Ada", "things": [1, 2]}, "nodes": {}}


def test_a_node_cannot_change_what_the_next_node_sees(run):
    definition = workflow(
        template_node("evil", "{{ input.update({'name': 'Mallory'}) }}"),
        template_node("next", "{{ input.name }}"),
        fields={"name": {"type": "string"}},
        output={"name": "{{ nodes.next.output.text }}", "input": "{{ input }}"},
        output_deps=["next"],
    )
    result, _ = run(definition, {"name": "Ada"})
    assert result.nodes["evil"].status == "failure"
    assert result.nodes["evil"].error["type"] == "template_error"
    assert result.output["name"] == "Ada" and result.output["input"]["name"] == "Ada"
    assert "Mallory" not in repr(result.to_dict())


@pytest.mark.parametrize("template", [
    "{{ 'a' * 200000000 }}",
    "x {{ 'a' * 200000000 }} y",
    "{{ 200000000 * 'a' }}",
    "{{ [0] * 200000000 }}",
    "{{ ('ab' * 50000) * 2 }}",
    "{{ 9 ** (9 ** 7) }}",
    "{{ 2 ** 100000000 }}",
    "{% set s = 'a' * 100000 %}{{ s * 100000 }}",
])
def test_huge_repetitions_and_powers_fail_fast(run, template):
    started = time.perf_counter()
    result, _ = run(workflow(template_node("t", template)))
    elapsed = time.perf_counter() - started
    assert result.nodes["t"].status == "failure"
    assert result.nodes["t"].error["type"] == "template_error"
    assert elapsed < 0.2


@pytest.mark.parametrize("template", ["{{ 1 / 0 }}", "{{ 'a' + 1 }}", "{{ 2.5 ** 100000 }}", "{{ range(10 ** 7) | list }}"])
def test_other_evaluation_errors_are_template_errors(run, template):
    result, _ = run(workflow(template_node("t", template)))
    assert result.nodes["t"].error["type"] == "template_error"


@pytest.mark.parametrize("template, expected", [
    ("{{ 'ab' * 3 }}", "ababab"),
    ("{{ 3 * 'ab' }}", "ababab"),
    ("{{ [0] * 3 }}", [0, 0, 0]),
    ("{{ ('a' * 100000) | length }}", 100000),
    ("{{ 2 ** 10 }}", 1024),
    ("{{ 2 ** 0.5 > 1.41 }}", True),
    ("{{ (-2) ** 3 }}", -8),
    ("{{ 6 * 7 }}", 42),
    ("{{ 1.5 * 2 }}", 3.0),
    ("{% set ns = namespace(n=0) %}{% for i in input.things %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}", "3"),
    ("{{ input.things | map('string') | join(',') }}", "1,2"),
    ("{{ dict(input, extra=1) }}", {"name": "Ada", "things": [1, 2], "extra": 1}),
])
def test_ordinary_templates_are_unchanged(template, expected):
    assert render(template, CTX) == expected
