"""The OpenAPI document: valid, warning-free, served, and honest about authentication."""

from __future__ import annotations

import re
import uuid

import pytest
from django.core.management import call_command

from apps.management_api.schema import PlatformSchemaGenerator
from tests import factories

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")


def _schema() -> dict:
    return PlatformSchemaGenerator().get_schema(request=None, public=True)


def test_the_schema_validates_without_warnings(tmp_path, capsys):
    """`manage.py spectacular --validate --fail-on-warn` over the whole project (both hosts)."""
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    assert target.read_text().startswith("openapi: 3")
    captured = capsys.readouterr()
    assert "Warning" not in captured.err and "Error" not in captured.err, captured.err


def test_the_management_views_cause_no_schema_warning(capsys):
    """The part of the document this app owns is warning-free on its own, whatever the other views do."""
    _schema()
    noise = [line for line in capsys.readouterr().err.splitlines()
             if "apps/management" in line or "management" in line.lower() or "Enum" in line]
    assert not noise, noise


def test_schema_and_docs_are_served(api_client):
    response = api_client.get("/v1/schema", {"format": "json"})
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert document["components"]["securitySchemes"]["accessKey"] == {
        "type": "http", "scheme": "bearer", "description": "An access key: `Authorization: Bearer dynamiq_acc_...`."}
    assert "/v1/connections/{connection_id}" in document["paths"]
    docs = api_client.get("/v1/docs")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_management_operations_are_all_documented_with_envelopes_and_errors():
    document = _schema()
    management = {path: item for path, item in document["paths"].items() if "servers" not in item}
    operations = [(path, method, op) for path, item in management.items() for method, op in item.items() if method in METHODS]
    assert len([o for o in operations if not o[0].startswith("/v1/connect/")]) == 38  # SPEC.md sections 8 and 13 (webhooks: 9)
    for path, method, operation in operations:
        if path.startswith("/v1/connect/"):
            continue
        responses = operation["responses"]
        assert {"401", "404"} <= set(responses), (method, path)
        success = [code for code in responses if code.startswith("2")]
        assert len(success) == 1, (method, path)
        if success[0] != "204":
            ref = responses[success[0]]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith(("Envelope", "Page")), (method, path, ref)
        if method == "post" and not path.endswith(("/rollback", "/authorize", "/rotate_secret")):
            assert success == ["201"], (method, path)
        assert responses["401"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"
        assert operation["security"] == [{"accessKey": []}], (method, path)
    # Write-only secrets are documented as such.
    schemas = document["components"]["schemas"]
    assert "callback_signing_secret" in schemas["AppCreated"]["properties"]
    assert "callback_signing_secret" not in schemas["App"]["properties"]
    assert schemas["PatchedConnectionUpdateRequest"]["additionalProperties"] is False


def test_app_host_operations_are_on_their_own_server():
    document = _schema()
    app_host = {path: item for path, item in document["paths"].items() if "servers" in item}
    # Every App-host operation of config/app_urls.py must stay documented: a vanished path fails, not skips.
    assert set(app_host) >= {
        "/", "/v1/connect/tokens", "/v1/files", "/v1/requirements/status", "/v1/runs", "/v1/runs/{run_id}",
        "/v1/runs/{run_id}/cancel", "/v1/runs/{run_id}/events", "/v1/runs/{run_id}/stream",
    }, sorted(app_host)
    for item in app_host.values():
        assert item["servers"][0]["url"].endswith("://{app_hostname}")
        assert item["servers"][1]["url"].endswith("/apps/{app_id}")
    assert "/v1/connect/tokens" in app_host  # the App-host operations documented so far join automatically


def test_missing_auth_is_401_on_every_operation(project):
    """Generated from the schema: every operation that declares a security requirement answers 401
    without credentials (App-host operations through the platform alias of a private App)."""
    app = factories.make_app(project, name="Private")
    from rest_framework.test import APIClient

    client = APIClient()
    document = _schema()
    checked = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS or {} in operation.get("security", [{}]):
                continue
            url = re.sub(r"\{\w+\}", lambda _: str(uuid.uuid4()), path)
            if "servers" in item:
                url = f"/apps/{app.id}{url}"
            response = getattr(client, method)(url)
            assert response.status_code == 401, (method.upper(), path, response.status_code, response.content[:200])
            assert response.json()["error"]["code"] == "unauthorized"
            checked.append((method, path))
    assert len(checked) >= 27
