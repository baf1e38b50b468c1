"""Definition validation (SPEC.md section 4): every rule refuses with a message keyed by a path."""

from __future__ import annotations

import copy

import pytest
from django.core.exceptions import ValidationError

from apps.connections.services import connection_create
from apps.core.errors import BadRequest
from apps.workflows.models import VersionConnectionRef, WorkflowVersion
from apps.workflows.services import workflow_version_create
from tests import factories

pytestmark = pytest.mark.django_db

URL = "https://billing.example.com/invoices"


@pytest.fixture
def workflow(project):
    return factories.make_workflow(project)


@pytest.fixture
def refs(project, teammate_project, workflow, canaries):
    """Everything a definition may (or may not) point at, by name."""
    shared = factories.make_connection(project)
    openai = connection_create(project=project, name="llm", type="openai", config={"api_key": canaries["openai_key"]})
    warehouse = connection_create(project=project, name="warehouse", type="postgresql", config={
        "host": "db.example.com", "database": "sales", "user": "reporter", "password": canaries["pg_password"],
    })
    other_project = factories.make_connection(teammate_project)
    requirement = factories.make_requirement(workflow)
    llm_requirement = factories.make_requirement(workflow, name="assistant", connection_type="openai", title="Your LLM")
    other_workflow = factories.make_workflow(project, name="other")
    foreign_requirement = factories.make_requirement(other_workflow)
    app = factories.make_app(project)
    end_user = factories.link_end_user(
        app, requirement, "user-42", {"url": "https://billing.example.com", "api_key": canaries["user42_api_key"]}
    ).connection
    return {
        "shared": {"id": str(shared.id)},
        "openai": {"id": str(openai.id)},
        "warehouse": {"id": str(warehouse.id)},
        "other_project": {"id": str(other_project.id)},
        "end_user": {"id": str(end_user.id)},
        "requirement": {"requirement": str(requirement.id)},
        "llm_requirement": {"requirement": str(llm_requirement.id)},
        "foreign_requirement": {"requirement": str(foreign_requirement.id)},
    }


def valid_definition(refs) -> dict:
    """input -> shared (http, shared connection) -> mine (http, requirement) -> ask (llm) -> sql -> fmt -> output."""
    return factories.definition(
        factories.http_node("shared", ref=refs["shared"], url=URL, headers={"Accept": "application/json"}),
        factories.http_node("mine", ref=refs["requirement"], url=URL, depends_on=("shared",)),
        {"id": "ask", "type": "llm", "depends_on": ["mine"], "connection": refs["openai"],
         "config": {"model": "gpt-4o-mini", "prompt": "Summarize {{ nodes.mine.output.body }}", "max_tokens": 200}},
        {"id": "report", "type": "sql", "depends_on": ["ask"], "connection": refs["warehouse"],
         "config": {"query": "select 1"}},
        {"id": "fmt", "type": "template", "depends_on": ["report"], "config": {"template": "{{ nodes.ask.output }}"}},
    )


def errors_for(workflow, definition) -> dict[str, list[str]]:
    with pytest.raises(BadRequest) as exc:
        workflow_version_create(workflow=workflow, definition=definition, actor="test")
    assert exc.value.code == "bad_request" and exc.value.message == "Invalid workflow definition."
    assert not WorkflowVersion.objects.filter(workflow=workflow).exists()
    return exc.value.details


def node(definition: dict, node_id: str) -> dict:
    return next(n for n in definition["nodes"] if n["id"] == node_id)


def index_of(definition: dict, node_id: str) -> int:
    return next(i for i, n in enumerate(definition["nodes"]) if n["id"] == node_id)


# --- the valid case ------------------------------------------------------------------------------------

def test_a_valid_definition_is_saved_as_version_1_with_its_references(workflow, refs):
    definition = valid_definition(refs)
    version = workflow_version_create(workflow=workflow, definition=definition, actor="user:alice")
    assert version.number == 1 and version.created_by == "user:alice"
    assert version.definition == definition
    assert {str(r.id) for r in version.requirements.all()} == {refs["requirement"]["requirement"]}
    assert {str(c) for c in VersionConnectionRef.objects.filter(version=version).values_list("connection_id", flat=True)} == {
        refs["shared"]["id"], refs["openai"]["id"], refs["warehouse"]["id"],
    }


def test_max_tokens_on_an_llm_node_stays_valid(workflow, refs):
    # The inline-credential rule must not catch ordinary keys that merely contain "token".
    definition = valid_definition(refs)
    node(definition, "ask")["config"].update(max_tokens=50, max_completion_tokens=60)
    version = workflow_version_create(workflow=workflow, definition=definition)
    config = node(version.definition, "ask")["config"]
    assert (config["max_tokens"], config["max_completion_tokens"]) == (50, 60)


def test_version_numbers_go_up_by_one(workflow, refs):
    numbers = [workflow_version_create(workflow=workflow, definition=valid_definition(refs)).number for _ in range(3)]
    assert numbers == [1, 2, 3]
    other = factories.make_workflow(workflow.project, name="second")
    assert workflow_version_create(workflow=other, definition=factories.definition()).number == 1


def test_versions_are_immutable(workflow, refs):
    version = workflow_version_create(workflow=workflow, definition=valid_definition(refs))
    version.description = "edited"
    with pytest.raises(ValidationError):
        version.save()
    with pytest.raises(ValidationError):
        version.delete()
    fresh = WorkflowVersion.objects.get(pk=version.pk)
    assert fresh.description == ""


def test_a_refused_definition_is_not_mutated(workflow, refs):
    definition = valid_definition(refs)
    node(definition, "shared")["config"]["headers"]["Authorization"] = "Bearer literal"
    snapshot = copy.deepcopy(definition)
    errors_for(workflow, definition)
    assert definition == snapshot


# --- shape ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("definition", [[], "nodes", None, {"nodes": "input"}, {"nodes": {}}, {}],
                         ids=["list", "string", "null", "nodes-string", "nodes-object", "no-nodes"])
def test_not_an_object_with_a_nodes_list(workflow, definition):
    assert errors_for(workflow, definition) == {"definition": ["must be an object with a 'nodes' list"]}


def test_unknown_top_level_field(workflow, refs):
    definition = {**valid_definition(refs), "secrets": {}}
    assert errors_for(workflow, definition) == {"definition.secrets": ["unknown top-level field"]}


def test_empty_nodes(workflow):
    errors = errors_for(workflow, {"nodes": []})
    assert "a workflow needs at least an input and an output node" in errors["nodes"]


def test_a_node_that_is_not_an_object(workflow):
    definition = factories.definition()
    definition["nodes"].insert(1, "http")
    assert errors_for(workflow, definition)["nodes.1"] == ["must be an object"]


def test_unknown_node_field(workflow):
    definition = factories.definition(factories.http_node("call", ref=None, url=URL))
    node(definition, "call")["retries"] = 3
    assert errors_for(workflow, definition) == {"nodes.1.retries": ["unknown node field"]}


@pytest.mark.parametrize("bad_id", ["1call", "has space", "", 7, None, "x" * 65, "dot.ted"])
def test_bad_node_id(workflow, bad_id):
    definition = factories.definition(factories.http_node("call", ref=None, url=URL))
    definition["nodes"][1]["id"] = bad_id
    definition["nodes"][2]["depends_on"] = ["input"]
    errors = errors_for(workflow, definition)
    assert errors["nodes.1.id"] == ["must be a name of letters, digits, '_' or '-' (starting with a letter or '_')"]


def test_duplicate_node_id(workflow):
    definition = factories.definition(
        factories.http_node("call", ref=None, url=URL), factories.http_node("call", ref=None, url=URL),
    )
    assert errors_for(workflow, definition)["nodes.2.id"] == ["duplicate node id 'call'"]


def test_unknown_node_type(workflow):
    definition = factories.definition({"id": "shell", "type": "bash", "depends_on": ["input"], "config": {}})
    [message] = errors_for(workflow, definition)["nodes.1.type"]
    assert message.startswith("unknown node type 'bash'")


@pytest.mark.parametrize("node_type", ["input", "output"])
def test_exactly_one_input_and_one_output(workflow, node_type):
    missing = factories.definition()
    missing["nodes"] = [n for n in missing["nodes"] if n["type"] != node_type]
    for n in missing["nodes"]:
        n["depends_on"] = []
    assert f"exactly one '{node_type}' node is required (found 0)" in errors_for(workflow, missing)["nodes"]

    doubled = factories.definition()
    extra = copy.deepcopy(next(n for n in doubled["nodes"] if n["type"] == node_type))
    extra["id"] = f"second_{node_type}"
    doubled["nodes"].append(extra)
    assert f"exactly one '{node_type}' node is required (found 2)" in errors_for(workflow, doubled)["nodes"]


@pytest.mark.parametrize(
    ("node_type", "path", "config"),
    [
        ("http", "nodes.1.config.method", {"method": "TRACE", "url": URL}),
        ("http", "nodes.1.config.headers", {"url": URL, "headers": ["Accept: */*"]}),
        ("template", "nodes.1.config.template", {}),
        ("llm", "nodes.1.config.prompt", {"model": "gpt-4o-mini"}),
        ("sql", "nodes.1.config.query", {"query": "  "}),
    ],
    ids=["http-method", "http-headers", "template", "llm-prompt", "sql-query"],
)
def test_node_config_shape(workflow, refs, node_type, path, config):
    ref = {"llm": refs["openai"], "sql": refs["warehouse"]}.get(node_type)
    n = {"id": "step", "type": node_type, "depends_on": ["input"], "config": config}
    if ref:
        n["connection"] = ref
    errors = errors_for(workflow, factories.definition(n))
    assert path in errors and set(errors) == {path}


def test_config_must_be_an_object(workflow):
    definition = factories.definition({"id": "fmt", "type": "template", "depends_on": ["input"], "config": "hi"})
    assert "nodes.1.config" in errors_for(workflow, definition)


def test_input_field_types(workflow):
    definition = factories.definition(input_fields={"when": {"type": "date"}})
    assert list(errors_for(workflow, definition)) == ["nodes.0.fields.when"]


# --- the graph -----------------------------------------------------------------------------------------

def test_depends_on_an_unknown_node(workflow):
    definition = factories.definition(factories.http_node("call", ref=None, url=URL, depends_on=("ghost",)))
    assert errors_for(workflow, definition) == {"nodes.1.depends_on": ["unknown node 'ghost'"]}


def test_depends_on_must_be_a_list_of_ids(workflow):
    definition = factories.definition(factories.http_node("call", ref=None, url=URL))
    definition["nodes"][1]["depends_on"] = "input"
    assert errors_for(workflow, definition)["nodes.1.depends_on"] == ["must be a list of node IDs"]


def test_self_dependency(workflow):
    definition = factories.definition(factories.http_node("call", ref=None, url=URL, depends_on=("input", "call")))
    errors = errors_for(workflow, definition)
    assert "a node cannot depend on itself" in errors["nodes.1.depends_on"]


def test_a_cycle(workflow):
    definition = factories.definition(
        factories.http_node("a", ref=None, url=URL, depends_on=("input", "c")),
        factories.http_node("b", ref=None, url=URL, depends_on=("a",)),
        factories.http_node("c", ref=None, url=URL, depends_on=("b",)),
    )
    assert errors_for(workflow, definition) == {"nodes": ["depends_on forms a cycle through: a, b, c"]}


# --- connections and requirements ----------------------------------------------------------------------

def test_a_connection_on_a_template_node(workflow, refs):
    definition = factories.definition({"id": "fmt", "type": "template", "depends_on": ["input"],
                                       "connection": refs["shared"], "config": {"template": "hi"}})
    assert errors_for(workflow, definition) == {"nodes.1.connection": ["a template node takes no connection"]}


@pytest.mark.parametrize("node_type", ["input", "output"])
def test_a_connection_on_an_input_or_output_node(workflow, refs, node_type):
    definition = factories.definition()
    i = index_of(definition, node_type)
    definition["nodes"][i]["connection"] = refs["shared"]
    assert errors_for(workflow, definition) == {f"nodes.{i}.connection": [f"a {node_type} node takes no connection"]}


@pytest.mark.parametrize(("node_type", "config"), [("llm", {"model": "m", "prompt": "p"}), ("sql", {"query": "select 1"})])
def test_llm_and_sql_need_a_connection(workflow, node_type, config):
    definition = factories.definition({"id": "step", "type": node_type, "depends_on": ["input"], "config": config})
    assert errors_for(workflow, definition) == {"nodes.1.connection": [f"a {node_type} node needs a connection"]}


@pytest.mark.parametrize(
    "ref",
    [{"name": "billing-api"}, {"id": "x", "requirement": "y"}, {}, "billing-api", ["id"], {"id": "x", "extra": 1}],
    ids=["by-name", "both", "empty", "string", "list", "extra-key"],
)
def test_malformed_connection_ref(workflow, ref):
    definition = factories.definition(factories.http_node("call", ref=ref, url=URL))
    assert errors_for(workflow, definition) == {
        "nodes.1.connection": ['must be {"id": <connection id>} or {"requirement": <requirement id>}']
    }


@pytest.mark.parametrize("key", ["id", "requirement"])
@pytest.mark.parametrize("value", ["billing-api", 42, None, "1234"])
def test_a_reference_that_is_not_a_uuid(workflow, key, value):
    definition = factories.definition(factories.http_node("call", ref={key: value}, url=URL))
    assert errors_for(workflow, definition) == {f"nodes.1.connection.{key}": ["must be a UUID"]}


@pytest.mark.parametrize("which", ["other_project", "end_user"])
def test_a_connection_that_is_not_a_shared_connection_of_the_project(workflow, refs, which):
    # Another project's connection, and an end user's connection (app set), are both invisible here.
    definition = factories.definition(factories.http_node("call", ref=refs[which], url=URL))
    assert errors_for(workflow, definition) == {
        "nodes.1.connection.id": ["no shared connection with this ID in the project"]
    }


def test_an_unknown_connection_id(workflow):
    definition = factories.definition(
        factories.http_node("call", ref={"id": "00000000-0000-4000-8000-000000000000"}, url=URL)
    )
    assert "nodes.1.connection.id" in errors_for(workflow, definition)


@pytest.mark.parametrize(
    ("which", "node_def", "message"),
    [
        ("openai", {"type": "http", "config": {"method": "GET", "url": URL}}, "a openai connection cannot serve a http node"),
        ("shared", {"type": "llm", "config": {"model": "m", "prompt": "p"}}, "a http_api_key connection cannot serve a llm node"),
        ("warehouse", {"type": "llm", "config": {"model": "m", "prompt": "p"}},
         "a postgresql connection cannot serve a llm node"),
        ("openai", {"type": "sql", "config": {"query": "select 1"}}, "a openai connection cannot serve a sql node"),
    ],
    ids=["openai-on-http", "api-key-on-llm", "postgresql-on-llm", "openai-on-sql"],
)
def test_a_connection_whose_type_does_not_fit_the_node(workflow, refs, which, node_def, message):
    definition = factories.definition({"id": "step", "depends_on": ["input"], "connection": refs[which], **node_def})
    assert errors_for(workflow, definition) == {"nodes.1.connection.id": [message]}


def test_a_requirement_of_another_workflow(workflow, refs):
    definition = factories.definition(factories.http_node("call", ref=refs["foreign_requirement"], url=URL))
    assert errors_for(workflow, definition) == {
        "nodes.1.connection.requirement": ["no requirement with this ID on this workflow"]
    }


def test_a_requirement_whose_type_does_not_fit_the_node(workflow, refs):
    definition = factories.definition(factories.http_node("call", ref=refs["llm_requirement"], url=URL))
    assert errors_for(workflow, definition) == {
        "nodes.1.connection.requirement": ["a openai requirement cannot serve a http node"]
    }


# --- no inline credentials -----------------------------------------------------------------------------

def test_a_literal_authorization_header_is_refused(workflow, refs):
    definition = valid_definition(refs)
    node(definition, "shared")["config"]["headers"]["Authorization"] = "Bearer sk-live-123"
    errors = errors_for(workflow, definition)
    assert errors == {"nodes.1.config.headers.Authorization": [
        "'Authorization' carries credentials; store it in a Connection and reference it."
    ]}
    assert "sk-live-123" not in str(errors)  # the error names the field, never echoes the value


@pytest.mark.parametrize(
    ("location", "key"),
    [
        ("headers", "Cookie"),
        ("headers", "X-Api-Key"),
        ("headers", "authorization"),
        ("headers", "Proxy-Authorization"),
        ("params", "access_token"),
        ("params", "api_key"),
        ("data", "client_secret"),
        ("data", "password"),
    ],
)
def test_credential_keys_in_request_mappings_are_refused(workflow, location, key):
    definition = factories.definition(factories.http_node("call", ref=None, url=URL, **{location: {key: "literal"}}))
    assert list(errors_for(workflow, definition)) == [f"nodes.1.config.{location}.{key}"]


@pytest.mark.parametrize("key", ["api_key", "apiKey", "password", "token", "secret", "client_secret", "private_key"])
def test_credential_keys_in_node_config_are_refused(workflow, key):
    definition = factories.definition(factories.http_node("call", ref=None, url=URL, **{key: "literal"}))
    assert errors_for(workflow, definition) == {
        f"nodes.1.config.{key}": [f"'{key}' looks like a credential; store it in a Connection and reference it."]
    }


def test_credential_keys_nested_anywhere_in_config_are_refused(workflow, refs):
    definition = valid_definition(refs)
    node(definition, "ask")["config"]["inputs"] = {"headers": {"token": "literal"}}
    node(definition, "fmt")["config"]["options"] = [{"api_key": "literal"}]
    assert set(errors_for(workflow, definition)) == {
        f"nodes.{index_of(definition, 'ask')}.config.inputs.headers.token",
        f"nodes.{index_of(definition, 'fmt')}.config.options.0.api_key",
    }


def test_credential_keys_on_an_llm_node_are_refused(workflow, refs):
    definition = valid_definition(refs)
    node(definition, "ask")["config"]["api_key"] = "sk-literal"
    assert list(errors_for(workflow, definition)) == [f"nodes.{index_of(definition, 'ask')}.config.api_key"]


def test_all_errors_are_reported_at_once(workflow, refs):
    definition = factories.definition(
        factories.http_node("call", ref={"id": "nope"}, url=URL, headers={"Authorization": "x"}, depends_on=("ghost",)),
        {"id": "call", "type": "bash"},
    )
    definition["extra"] = True
    assert set(errors_for(workflow, definition)) >= {
        "definition.extra", "nodes.1.config.headers.Authorization", "nodes.1.connection.id", "nodes.1.depends_on",
        "nodes.2.id", "nodes.2.type",
    }


# --- no inline credentials in values either (SPEC §12) ---------------------------------------------------
# Synthetic credential shapes (never real keys), assembled so no scanner mistakes this file for a leak.
RANDOM_24 = "Xq7" + "Lm2Rt9Vb4Nc8Kd1Zs6Wp3Y"  # 25 chars, mixed case + digits
SK_KEY = "sk-" + "proj-4fQ8mZ2xR7tB1nK9wL3vP6sD"
GHP = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z"
SLACK = "xoxb-" + "1234567890-abcdefghijklmn"
JWT = "eyJ" + "hbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig"
STRIPE = "sk_" + "live_51HxYzAbCdEf0123"
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GOOGLE = "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"


def _call(**config) -> dict:
    return factories.definition({"id": "call", "type": "http", "depends_on": ["input"],
                                 "config": {"method": "GET", **config}})


@pytest.mark.parametrize("url", [
    "https://user:pass@billing.example.com/invoices",
    "https://" + RANDOM_24 + "@billing.example.com/",
    "https://user:{{ input.password }}@billing.example.com/",  # the user name is still inline
])
def test_url_userinfo_is_refused(workflow, url):
    errors = errors_for(workflow, _call(url=url))
    assert list(errors) == ["nodes.1.config.url"]
    assert "user:password@" in errors["nodes.1.config.url"][0]
    assert "pass@" not in str(errors) and RANDOM_24 not in str(errors)


@pytest.mark.parametrize("name", ["api_key", "apikey", "apiKey", "key", "token", "access_token", "sig", "signature",
                                  "password", "secret", "client_secret", "auth", "subscription-key"])
def test_sensitive_query_names_in_a_url_are_refused(workflow, name):
    errors = errors_for(workflow, _call(url=f"{URL}?page=2&{name}=literal-value-1"))
    assert errors == {"nodes.1.config.url": [
        f"This value looks like a credential (the URL query parameter '{name}' carries credentials); "
        "store it in a Connection and reference it."]}


def test_a_sensitive_query_name_in_the_inputs_layer_url_is_refused(workflow):
    errors = errors_for(workflow, _call(url=URL, inputs={"url": "?access_token=abc123def"}))
    assert list(errors) == ["nodes.1.config.inputs.url"]


@pytest.mark.parametrize("where", ["config", "inputs"])
@pytest.mark.parametrize("name", ["key", "sig", "api_key", "access_key"])
def test_url_placeholders_filled_from_secret_named_parameters_are_refused(workflow, where, name):
    config = {"url": f"https://maps.example.com/v1/geocode?q={{q}}&{name}={{{name}}}"}
    parameters = {"q": "{{ input.question }}", name: "literal-value-1"}
    if where == "config":
        config["parameters"] = parameters
    else:
        config["inputs"] = {"parameters": parameters}
    errors = errors_for(workflow, _call(**config))
    prefix = "nodes.1.config" if where == "config" else "nodes.1.config.inputs"
    assert f"{prefix}.parameters.{name}" in errors
    assert "literal-value-1" not in str(errors)


def test_a_secret_named_placeholder_in_the_path_is_refused_too(workflow):
    errors = errors_for(workflow, _call(url="https://hooks.example.com/{token}/send", parameters={"token": "t"}))
    assert list(errors) == ["nodes.1.config.parameters.token"]


@pytest.mark.parametrize("value, rule", [
    ("Bearer abcd1234efgh", "literal 'Bearer ...'"),
    ("basic dXNlcjpwYXNzd29yZA==", "literal 'basic ...'"),
    ("Token 9f8e7d6c5b4a", "literal 'Token ...'"),
    (SK_KEY, "sk-..."),
    (f"Bearer {SK_KEY}", "literal 'Bearer ...'"),
    (GHP, "GitHub token"),
    (SLACK, "Slack token"),
    (JWT, "JWT"),
    (STRIPE, "Stripe key"),
    (AWS, "AWS access key ID"),
    (GOOGLE, "Google API key"),
    (RANDOM_24, "random-looking token"),
])
@pytest.mark.parametrize("location", ["headers", "params", "data"])
def test_credential_looking_values_in_request_mappings_are_refused(workflow, value, rule, location):
    # Under an innocent-looking name: the name rule cannot see these, the value rule does.
    errors = errors_for(workflow, _call(url=URL, **{location: {"X-Team": value}}))
    assert list(errors) == [f"nodes.1.config.{location}.X-Team"]
    assert rule in errors[f"nodes.1.config.{location}.X-Team"][0]
    assert value not in str(errors)


def test_credential_looking_values_in_the_inputs_layer_and_nested_data_are_refused(workflow):
    definition = _call(url=URL, method="POST", inputs={"headers": {"X-Team": SK_KEY}},
                       data={"account": {"keys": ["public", GHP]}})
    assert set(errors_for(workflow, definition)) == {
        "nodes.1.config.inputs.headers.X-Team", "nodes.1.config.data.account.keys.1",
    }


def test_credential_looking_query_values_are_refused(workflow):
    errors = errors_for(workflow, _call(url=f"{URL}?team={RANDOM_24}"))
    assert "the URL query parameter 'team' looks like a credential" in errors["nodes.1.config.url"][0]


def test_llm_template_and_sql_configs_are_scanned_too(workflow, refs):
    definition = valid_definition(refs)
    node(definition, "ask")["config"]["prompt"] = f"Use the key {SK_KEY} to summarize {{{{ nodes.mine.output }}}}"
    node(definition, "report")["config"]["query"] = f"select * from t where token = '{GHP}'"
    node(definition, "fmt")["config"]["template"] = {"auth": f"Bearer {RANDOM_24}"}
    assert set(errors_for(workflow, definition)) == {
        f"nodes.{index_of(definition, 'ask')}.config.prompt",
        f"nodes.{index_of(definition, 'report')}.config.query",
        f"nodes.{index_of(definition, 'fmt')}.config.template.auth",
    }


# False-positive guards: templates, ordinary words, identifiers and URLs pass.
ORDINARY_VALUES = [
    "{{ input.question }}", "Bearer {{ input.token }}", "{{ nodes.a.output.body.next_page_token }}",
    "application/vnd.github.v3+json", "application/json; charset=utf-8", "Token expired",
    "Basic information about the account", "MyApp/1.0.3-beta+build.20241201",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36",
    "ThisIsAVeryLongCamelCaseIdentifier1", "invoice_2024_01_summary_report_final",
    "mistralai/Mixtral-8x7B-Instruct-v0.1", "sentence-transformers/all-MiniLM-L6-v2",
    "projects/my-project-123/locations/us-central1/models/gemini-1.5-pro", "claude-3-5-sonnet-20241022",
    "anthropic.claude-3-haiku-20240307-v1:0", "arn:aws:iam::123456789012:role/MyRole2024",
    "123e4567-e89b-12d3-a456-426614174000", "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
    "2024-01-01T00:00:00.000Z", "sk-learn-preprocessing", "customer-account-number-1234567",
    "https://api.example.com/v2/accounts/12345/invoices?status=open&page=2&sort_by=created",
    "https://billing.example.com/invoices?page_size={{ input.n }}&api_key={{ input.api_key }}",
    "https://{{ input.user }}@billing.example.com/", "mailto:ada@example.com", "Ada Lovelace <ada@example.com>",
]


@pytest.mark.parametrize("value", ORDINARY_VALUES)
def test_ordinary_values_pass(workflow, value):
    definition = _call(url=URL, headers={"X-Note": value}, params={"q": value}, parameters={"name": value})
    version = workflow_version_create(workflow=workflow, definition=definition, actor="test")
    assert version.number == 1


def test_ordinary_urls_and_prompts_pass(workflow, refs):
    definition = valid_definition(refs)
    node(definition, "shared")["config"]["url"] = "https://billing.example.com/accounts/{account}/invoices?limit=50"
    node(definition, "shared")["config"]["parameters"] = {"account": "{{ input.question }}"}
    node(definition, "ask")["config"]["prompt"] = (
        "You are a billing assistant. Summarize the invoices below in plain English; mention the token usage "
        "only if asked. Basic rules: be brief.\n{{ nodes.mine.output.body | tojson }}"
    )
    node(definition, "report")["config"]["query"] = (
        "select id, total from invoices where created_at > '2024-01-01' and status = 'open' order by id limit 10"
    )
    workflow_version_create(workflow=workflow, definition=definition, actor="test")


def test_the_random_token_rule_catches_generated_keys_and_spares_identifiers():
    # Figures documented in docs/decisions.md; a fixed seed keeps this deterministic.
    import random
    import string

    from apps.engine.inline_credentials import looks_random

    rng = random.Random(20261201)
    alphabet = string.ascii_letters + string.digits + "-_"
    tokens = ["".join(rng.choice(alphabet) for _ in range(32)) for _ in range(500)]
    caught = sum(looks_random(t) for t in tokens)
    assert caught >= 475  # >= 95% of 32-character base64url keys
    for identifier in ("ThisIsAVeryLongCamelCaseIdentifier1", "Mixtral-8x7B-Instruct-v0",
                       "invoice_2024_01_summary_report_final", "2d711642b726b04401627ca9fbac32f5c8530fb1"):
        assert not looks_random(identifier)
