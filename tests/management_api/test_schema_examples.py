"""The OpenAPI document shows an example on every operation, every example fits the schema it illustrates, and
the error envelope's `code` is an enum of exactly the codes the code base answers with (apps/core/errors.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from apps.core import errors
from apps.management_api.schema import PlatformSchemaGenerator

METHODS = ("get", "post", "put", "patch", "delete")
APPS = Path(errors.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def document() -> dict:
    return PlatformSchemaGenerator().get_schema(request=None, public=True)


def operations(document):
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield f"{method.upper()} {path}", item[method]


def media_examples(operation) -> list[tuple[str, dict, dict]]:
    """(where, media type object, example) for every request and response example of an operation."""
    found = []
    for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
        found += [(f"request {media_type}", media, e) for e in media.get("examples", {}).values()]
    for status, response in operation["responses"].items():
        for media_type, media in response.get("content", {}).items():
            found += [(f"{status} {media_type}", media, e) for e in media.get("examples", {}).values()]
    return found


def test_every_operation_has_an_example_of_its_request_or_success_answer(document):
    missing = []
    for name, operation in operations(document):
        examples = media_examples(operation)
        success_has_body = any(status.startswith("2") and response.get("content")
                               for status, response in operation["responses"].items())
        if success_has_body or "requestBody" in operation:
            # An example of what is sent or of what a success answers; an error example alone does not count.
            examples = [e for e in examples if e[0].startswith(("request", "2"))]
        if not examples:
            missing.append(name)
    assert missing == []
    assert len(list(operations(document))) >= 40


def _openapi_to_json_schema(node):
    """OpenAPI 3.0 `nullable: true` as JSON Schema's null type; everything else is read as it is."""
    if isinstance(node, list):
        return [_openapi_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _openapi_to_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def test_every_example_fits_the_schema_it_illustrates(document):
    components = _openapi_to_json_schema(document["components"])
    mismatches = []
    for name, operation in operations(document):
        for where, media, example in media_examples(operation):
            root = {"components": components, "allOf": [_openapi_to_json_schema(media["schema"])]}
            for error in Draft202012Validator(root).iter_errors(example["value"]):
                mismatches.append(f"{name} {where}: {error.message} at {list(error.absolute_path)}")
    assert mismatches == []


def test_the_error_code_is_an_enum_of_the_codes_defined_in_core_errors(document):
    defined = {cls.code for cls in vars(errors).values()
               if isinstance(cls, type) and issubclass(cls, errors.ApplicationError)}
    defined |= set(errors._DRF_CODES.values())  # what DRF's own exceptions (405, 406, 429, ...) are answered as

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    defined |= {cls.code for cls in subclasses(errors.ApplicationError)}  # other apps' errors (oauth_error)
    schemas = document["components"]["schemas"]
    assert schemas["ErrorBody"]["properties"]["code"] == {"$ref": "#/components/schemas/ErrorCode"}
    enum = schemas["ErrorCode"]["enum"]
    assert enum == sorted(enum)
    assert set(enum) == defined
    assert {"bad_request", "not_found", "node_failed", "requirements_unsatisfied", "rate_limited",
            "internal_error"} <= set(enum)
    for code in enum:
        assert f"`{code}` - " in schemas["ErrorCode"]["description"]


def test_every_code_an_envelope_is_built_with_is_in_the_enum(document):
    """Plain Django views and middleware build envelopes from literal codes: each must be documented too."""
    pattern = re.compile(r"""\berror_(?:response|body)\(\s*["']([a-z_]+)["']""")
    literal = {code for path in APPS.rglob("*.py") for code in pattern.findall(path.read_text())}
    assert {"not_found", "internal_error", "bad_request"} <= literal
    assert literal <= set(document["components"]["schemas"]["ErrorCode"]["enum"])
