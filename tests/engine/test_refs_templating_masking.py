"""Small pure units: reference collection, templates, masking."""

import base64
from urllib.parse import quote, quote_plus

import pytest
from jinja2 import TemplateError

from apps.engine import Masker, collect_references, render
from apps.engine.connection_types import MASK
from apps.engine.masking import connection_secrets

from .conftest import conn


def test_it_collects_references_in_node_order_without_duplicates():
    definition = {"nodes": [
        {"id": "input", "type": "input"},
        {"id": "a", "type": "http", "connection": {"requirement": "r2"}},
        {"id": "b", "type": "http", "connection": {"id": "c1"}},
        {"id": "c", "type": "llm", "connection": {"requirement": "r1"}},
        {"id": "d", "type": "http", "connection": {"id": "c1"}},
        {"id": "e", "type": "http", "connection": {"requirement": "r2"}},
        {"id": "output", "type": "output"},
    ]}
    assert collect_references(definition) == (["c1"], ["r2", "r1"])


def test_it_collects_nothing_from_a_definition_without_connections():
    assert collect_references({"nodes": [{"id": "input", "type": "input"}]}) == ([], [])


CTX = {"input": {"q": "hi", "n": 3, "obj": {"a": [1, 2]}}, "nodes": {"x": {"output": {"body": {"k": "v"}}}}}


@pytest.mark.parametrize(("template", "expected"), [
    ("{{ input.n }}", 3),
    ("{{ input.obj }}", {"a": [1, 2]}),
    ("  {{ nodes.x.output.body }}  ", {"k": "v"}),
    ("{{ input.obj.a }}", [1, 2]),
    ("{{ input.n + 1 }}", 4),
    ("n={{ input.n }}", "n=3"),
    ("{{ input.q }} {{ input.q }}", "hi hi"),
    ("{% if input.n > 2 %}big{% endif %}", "big"),
    ("no template here", "no template here"),
    ("{not a template}", "{not a template}"),
    ("{{ input.q | upper }}", "HI"),
    ("{{- input.obj -}}", {"a": [1, 2]}),
    ("{{ -input.n }}", -3),
    ("{{ input.q }}-{{ input.q }}", "hi-hi"),
])
def test_it_renders_strings_and_native_values(template, expected):
    assert render(template, CTX) == expected


def test_it_renders_dicts_and_lists_recursively():
    value = {"a": ["{{ input.n }}", "x{{ input.q }}"], "b": {"c": "{{ input.obj }}"}, "d": 5}
    assert render(value, CTX) == {"a": [3, "xhi"], "b": {"c": {"a": [1, 2]}}, "d": 5}


@pytest.mark.parametrize("template", ["{{ input.missing }}", "x {{ input.missing }}", "{{ nodes.nope.output }}"])
def test_it_refuses_a_missing_variable_with_a_template_error(template):
    with pytest.raises(TemplateError, match="missing|nope"):
        render(template, CTX)


def test_it_is_sandboxed():
    with pytest.raises(TemplateError):
        render("{{ input.__class__.__mro__[1].__subclasses__() }}", CTX)


def test_it_masks_raw_base64_and_url_encoded_forms():
    secret = "s3cr/t+key=="
    masker = Masker([secret])
    forms = [
        secret,
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(secret.encode()).decode().rstrip("="),
        base64.urlsafe_b64encode(secret.encode()).decode(),
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
    ]
    for form in forms:
        assert masker.mask(f"before {form} after") == f"before {MASK} after", form


def test_it_masks_nested_values_and_keys_and_leaves_other_types():
    masker = Masker(["topsecret"])
    value = {"a": ["x topsecret", {"topsecret": 1}], "n": 5, "t": ("topsecret",), "none": None}
    assert masker.mask(value) == {"a": [f"x {MASK}", {MASK: 1}], "n": 5, "t": [MASK], "none": None}


def test_it_ignores_secrets_shorter_than_four_characters():
    masker = Masker(["abc", ""])
    assert not masker
    assert masker.mask("abc abc") == "abc abc"


def test_it_masks_the_longest_form_first():
    masker = Masker(["key1", "key1key1-long"])
    assert masker.mask("key1key1-long") == MASK


def test_connection_secrets_include_the_prefixed_key_and_oauth_tokens():
    api = conn("c1", "http_api_key", url="https://x.test", api_key="abcd1234", prefix="Token ", header="X")
    assert set(connection_secrets(api)) == {"abcd1234", "Token abcd1234"}
    oauth = conn("c2", "oauth2", provider_id="p", access_token="at-123456", refresh_token="rt-123456")
    assert set(connection_secrets(oauth)) == {"at-123456", "rt-123456"}
    http = conn("c3", "http", headers={"Authorization": "Basic zzzz", "Accept": "json"}, params={"token": "tttt"})
    # Every header/param/data value is secret, `Accept: json` included (SPEC §12).
    assert set(connection_secrets(http)) == {"Basic zzzz", "zzzz", "json", "tttt"}
    named = conn("c4", "http", headers={"X-Honeycomb-Team": "Token hc-0123"}, params={"appid": "owm-4567"},
                 data={"nested": {"team": "t-89ab", "n": 12345, "flag": True}})
    assert set(connection_secrets(named)) == {"Token hc-0123", "hc-0123", "owm-4567", "t-89ab", "12345"}
