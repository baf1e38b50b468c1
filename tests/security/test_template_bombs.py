"""Template bombs (SPEC 12, "Templates have a budget"): widths, counts and loops that come from run input end
as the node error `template_limit`, naming the limit, with the process's memory unmoved.

The bombs run through the real engine (`execute` with a template node, the width/count in the run input),
one through the App-host API with limits from settings. The memory test runs the whole battery in a fresh
interpreter and compares its peak RSS after the battery with its peak after a warm-up.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from apps.engine import RunContext, RunOptions, TemplateLimits, execute, make_http_client
from tests import factories
from tests.engine.conftest import FakeResolver

ROOT = Path(__file__).resolve().parents[2]
HUGE = 600_000_000
TEXT = "ab" * 1000  # 2,000 characters
RUN_INPUT = {"n": HUGE, "text": TEXT}

# (name, template, limit): every one of these allocates hundreds of MB, runs for minutes, or both, without the budget.
BOMBS = [
    ("str.format width", "{{ '{:>600000000}'.format(1) }}", "width"),
    ("str.format width from input", "{{ '{:>{w}}'.format(1, w=input.n) }}", "width"),
    ("str.format precision", "{{ '{:.{p}f}'.format(1.5, p=input.n) }}", "width"),
    ("str.format_map width", "{{ '{x:>{w}}'.format_map({'x': 1, 'w': input.n}) }}", "width"),
    ("format repeated field", "{{ ('{0}' * 30000).format(input.text) }}", "output_chars"),
    ("% width", "{{ '%999999999s' % 1 }}", "width"),
    ("% star width from input", "{{ '%*s' % (input.n, 'x') }}", "width"),
    ("% precision", "{{ '%.*f' % (input.n, 1.5) }}", "width"),
    ("% mapping amplification", "{{ ('%(t)s' * 20000) % {'t': input.text} }}", "output_chars"),
    ("|format", "{{ '%*s'|format(input.n, 'x') }}", "width"),
    ("|center", "{{ 'x'|center(input.n) }}", "width"),
    ("|indent width", "{{ 'a\nb'|indent(input.n) }}", "width"),
    ("|indent lines", "{{ ('x\n' * 50000)|indent(100000) }}", "output_chars"),
    ("str.center", "{{ 'x'.center(input.n) }}", "width"),
    ("str.ljust", "{{ 'x'.ljust(input.n) }}", "width"),
    ("str.rjust", "{{ 'x'.rjust(input.n, '*') }}", "width"),
    ("str.zfill", "{{ '1'.zfill(input.n) }}", "width"),
    ("str.expandtabs", "{{ 'a\tb'.expandtabs(input.n) }}", "width"),
    ("str.replace amplification", "{{ input.text.replace('a', input.text * 40) }}", "output_chars"),
    ("|replace amplification", "{{ input.text|replace('a', input.text * 40) }}", "output_chars"),
    ("str.join amplification", "{{ (input.text * 40).join(input.text) }}", "output_chars"),
    ("|join amplification", "{{ ([input.text * 40] * 1000)|join(',') }}", "output_chars"),
    ("|join of reprs", "{{ [[input.text] * 100000]|join }}", "output_chars"),
    ("str.translate amplification", "{{ input.text.translate({97: input.text * 50}) }}", "output_chars"),
    ("tojson indent", "{{ {'a': {'b': [1]}}|tojson(indent=input.n) }}", "width"),
    ("tojson of shared references", "{{ ([input.text] * 100000)|tojson }}", "output_chars"),
    ("wordwrap wrapstring", "{{ input.text|wordwrap(1, wrapstring=input.text * 40) }}", "output_chars"),
    ("str() of shared references", "x{{ [input.text * 50] * 100000 }}", "output_chars"),
    ("|string of shared references", "{{ [[input.text] * 100000]|string }}", "output_chars"),
    ("~ of shared references", "{{ 'x' ~ [input.text] * 100000 }}", "output_chars"),
    ("+ doubling", "{% set a = input.text * 50 %}{% set b = a + a %}{% set c = b + b %}{% set d = c + c %}"
                   "{% set e = d + d %}{% set f = e + e %}{% set g = f + f %}{% set h = g + g %}{% set i = h + h %}"
                   "{{ (i + i)|length }}", "output_chars"),
    ("* repetition", "{{ input.text * input.n }}", "width"),
    ("|batch fill", "{{ [1]|batch(input.n, 'x')|list|length }}", "width"),
    ("|slice count", "{{ [1]|slice(input.n)|list|length }}", "width"),
    ("|sum of lists", "{{ ([[1] * 100000] * 100000)|sum(start=[])|length }}", "width"),
    ("|round precision", "{{ 5|round(input.n, 'floor') }}", "width"),
    ("lipsum", "{{ lipsum(input.n) }}", "width"),
    ("nested ranges", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "loop_steps"),
    ("filtered inner loop", "{% for i in range(100000) %}{% for j in range(100000) if false %}{% endfor %}"
                            "{% endfor %}", "loop_steps"),
    ("macro fan-out", "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
     "loop_steps"),
    ("recursive loop", "{% for x in [1] recursive %}{{ loop(range(1000)) if loop.depth < 5 }}{% endfor %}",
     "loop_steps"),
    ("kept alive in a namespace", "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
                                  "{% set ns.l = ns.l + [input.text * 50 ~ i] %}{% endfor %}{{ ns.l|length }}",
     "built_chars"),
    ("set block buffer", "{% set s %}{% for i in range(100000) %}{{ input.text * 50 }}{% endfor %}{% endset %}"
                         "{{ s|length }}", "built_chars"),
    ("lazy map materialised", "{{ range(100000)|map('string')|map('center', 100000)|list|length }}",
     "built_chars"),
    ("output", "{% for i in range(2000) %}{{ input.text }}{% endfor %}", "output_chars"),
]


def template_workflow(template: str) -> dict:
    return {"nodes": [
        {"id": "input", "type": "input", "fields": {"n": {"type": "integer"}, "text": {"type": "string"}}},
        {"id": "bomb", "type": "template", "depends_on": ["input"], "config": {"template": template}},
        {"id": "output", "type": "output", "depends_on": ["bomb"], "fields": {"text": "{{ nodes.bomb.output.text }}"}},
    ]}


def run_template(template: str, run_input: dict | None = None, limits: TemplateLimits | None = None):
    with make_http_client(allow_private=True, timeout=5.0) as client:
        return execute(
            definition=template_workflow(template), run_input=RUN_INPUT if run_input is None else run_input,
            resolver=FakeResolver(), context=RunContext(app_id="app-1", user_id="alice", run_id="run-1"),
            options=RunOptions(template_limits=limits or TemplateLimits()), http_client=client,
        )


@pytest.mark.parametrize("template, limit", [b[1:] for b in BOMBS], ids=[b[0] for b in BOMBS])
def test_each_bomb_from_run_input_is_a_template_limit_error(template, limit):
    # A generous clock so that the limit named is the one the bomb hits first on any machine, however loaded
    # (with the default 2 s a slow machine may stop a fan-out on time before it reaches its step budget).
    result = run_template(template, limits=TemplateLimits(max_render_seconds=120))
    node = result.nodes["bomb"]
    assert node.status == "failure"
    assert node.error["type"] == "template_limit", node.error
    assert node.error["limit"] == limit, node.error
    assert result.nodes["output"].status == "skipped"


def test_a_macro_calling_itself_ends_as_a_template_limit_not_a_crash():
    result = run_template("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}")
    assert result.nodes["bomb"].error["type"] == "template_limit"
    assert result.nodes["bomb"].error["limit"] in {"recursion", "loop_steps"}


def test_the_loop_budget_counts_steps_across_nested_loops():
    limits = TemplateLimits(max_loop_steps=1000)
    ok = run_template("{% for i in range(20) %}{% for j in range(49) %}{% endfor %}{% endfor %}", limits=limits)
    assert ok.nodes["bomb"].status == "success"  # 20 + 20 * 49 = 1000 steps
    over = run_template("{% for i in range(20) %}{% for j in range(50) %}{% endfor %}{% endfor %}", limits=limits)
    assert over.nodes["bomb"].error["limit"] == "loop_steps"
    assert "1000 loop steps" in over.nodes["bomb"].error["message"]


def test_the_wall_clock_budget_names_its_limit():
    # A zero budget: the first loop step is already late. (Asserts the code and the limit, not a duration.)
    result = run_template("{% for i in range(10) %}{{ i }}{% endfor %}", limits=TemplateLimits(max_render_seconds=0))
    assert result.nodes["bomb"].error["type"] == "template_limit"
    assert result.nodes["bomb"].error["limit"] == "render_seconds"


@pytest.mark.parametrize("template, expected", [
    ("{{ '{:>8}|{:<6.2f}|{:^7}'.format('a', 3.14159, 'mid') }}", "       a|3.14  |  mid  "),
    ("{{ '%-10s|%5.1f' % ('name', 2.25) }}", "name      |  2.2"),
    ("{{ '%s, %s!'|format('Hello', input.text[:2]) }}", "Hello, ab!"),
    ("{{ 'x'|center(20) }}", "         x          "),
    ("{{ 'x'.rjust(5, '*') ~ '7'.zfill(3) }}", "****x007"),
    ("{{ 'a\nb'|indent(2, first=true) }}", "  a\n  b"),
    ("{{ [1, 2, 3]|join(', ') }}", "1, 2, 3"),
    ("{{ ','.join(['a', 'b']) }}", "a,b"),
    ("{{ {'a': [1, 2]}|tojson(indent=2) }}", '{\n  "a": [\n    1,\n    2\n  ]\n}'),
    ("{{ input.text.replace('ab', 'xyz')|length }}", 3000),
    ("{{ input.text|wordwrap(500)|length > 0 }}", True),
    ("{% set ns = namespace(n=0) %}{% for i in range(60) %}{% for j in range(60) %}{% set ns.n = ns.n + 1 %}"
     "{% endfor %}{% endfor %}{{ ns.n }}", "3600"),
    ("{% for row in range(3000) %}{{ row }},{% endfor %}", ",".join(str(i) for i in range(3000)) + ","),
    ("{{ (input.text * 50)|length }}", 100_000),
    ("{% macro li(x) %}<{{ x }}>{% endmacro %}{% for x in range(3) %}{{ li(x) }}{% endfor %}", "<0><1><2>"),
])
def test_legitimate_templates_near_the_limits_still_render(template, expected):
    result = run_template(template)
    assert result.nodes["bomb"].status == "success", result.nodes["bomb"].error
    assert result.nodes["bomb"].output["text"] == expected


@pytest.mark.django_db
def test_a_bomb_through_the_app_host_api_fails_with_template_limit_from_settings(client, project, owner_key, settings):
    settings.TEMPLATE_MAX_LOOP_STEPS = 500
    workflow = factories.make_workflow(project, "bombs")
    version = factories.make_version(workflow, template_workflow(
        "{% for i in range(input.n) %}{% for j in range(input.n) %}{% endfor %}{% endfor %}"
    ))
    app = factories.make_app(project, name="Bombs", version=version)
    response = client.post(f"/apps/{app.id}/v1/runs", {"input": {"n": 100, "text": "t"}},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 200, response.content
    node = response.json()["nodes"]["bomb"]
    assert node["status"] == "failure"
    assert node["error"]["type"] == "template_limit"
    assert node["error"]["limit"] == "loop_steps"
    assert "500 loop steps" in node["error"]["message"]  # the setting reached the engine (default is 100,000)


_BATTERY = """
import json, resource, sys
from apps.engine import TemplateLimitError
from apps.engine.templating import render

bombs = json.loads(sys.argv[1])
context = {"input": json.loads(sys.argv[2]), "nodes": {}}
# Warm-up: import, compile and run every template path once with legitimate input, then measure.
for template in ["{{ '{:>9}'.format(1) }}", "{% for i in range(3000) %}{{ i }}{% endfor %}", "{{ [1]|tojson(indent=2) }}",
                 "{{ input.text|replace('a', 'b')|center(9) ~ ('%5s' % 1) }}", "{{ (input.text * 50)|length }}"]:
    render(template, context)
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
codes = []
for _ in range(3):  # "a few in a row"
    for template in bombs:
        try:
            render(template, context)
            codes.append("rendered")
        except TemplateLimitError as exc:
            codes.append(exc.type)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_kb": baseline, "peak_kb": peak, "codes": codes}))
"""


def test_a_battery_of_bombs_leaves_the_process_memory_unmoved():
    bombs = [template for _, template, _ in BOMBS]
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_BATTERY), json.dumps(bombs), json.dumps(RUN_INPUT)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["codes"] == ["template_limit"] * (3 * len(bombs))
    grown_mb = (report["peak_kb"] - report["baseline_kb"]) / 1024  # ru_maxrss is in KiB on Linux
    print(f"peak RSS grew by {grown_mb:.1f} MB over {3 * len(bombs)} bombs")
    assert grown_mb < 50, report
