from __future__ import annotations

import pytest

from apps.workflows.models import WorkflowVersion
from tests import factories

pytestmark = pytest.mark.django_db


def test_it_creates_and_reads_workflows(owner, project):
    response = owner.post("/v1/workflows", {"name": "support", "description": "Tickets"}, format="json")
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["name"] == "support" and data["latest_version"] is None and data["project_id"] == str(project.id)
    assert owner.get(f"/v1/workflows/{data['id']}").json()["data"] == data
    assert owner.post("/v1/workflows", {"name": "support"}, format="json").status_code == 409
    assert owner.post("/v1/workflows", {"description": "no name"}, format="json").status_code == 400


def test_requirements_create_get_patch(owner, world):
    base = f"/v1/workflows/{world.workflow.id}/requirements"
    response = owner.post(base, {"name": "crm", "title": "Your CRM", "spec": {"connection_type": "oauth2",
                                 "provider_id": str(world.provider.id), "scopes": ["read"],
                                 "config": {"url": "https://crm.example.com"}}}, format="json")
    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert data["spec"] == {"connection_type": "oauth2", "provider_id": str(world.provider.id), "scopes": ["read"],
                            "config": {"url": "https://crm.example.com"}}
    assert data["workflow_id"] == str(world.workflow.id) and data["type"] == "connection"
    response = owner.patch(f"{base}/{data['id']}", {"title": "CRM account", "description": "Sign in"}, format="json")
    assert response.status_code == 200
    assert response.json()["data"]["title"] == "CRM account"
    for field, value in (("name", "other"), ("spec", {"connection_type": "http"}), ("type", "connection")):
        assert owner.patch(f"{base}/{data['id']}", {field: value}, format="json").status_code == 400
    assert owner.get(f"{base}/{data['id']}").json()["data"]["spec"]["connection_type"] == "oauth2"
    assert owner.get(base).json()["pagination"]["total_count"] == 2


def test_requirements_validate(owner, world):
    base = f"/v1/workflows/{world.workflow.id}/requirements"
    assert owner.post(base, {"name": "Bad Name", "title": "x", "spec": {"connection_type": "http"}},
                      format="json").status_code == 400
    assert owner.post(base, {"name": "x", "title": "x", "spec": {"connection_type": "fax"}}, format="json").status_code == 400
    assert owner.post(base, {"name": "billing", "title": "x", "spec": {"connection_type": "http"}},
                      format="json").status_code == 409


@pytest.mark.parametrize("config, field", [
    (None, "spec.config"),  # no builder-fixed url: the users' tokens could go anywhere
    ({}, "spec.config.url"),
    ({"url": "https://{tenant}.crm.example.com"}, "spec.config.url"),
    ({"url": "https://user:pw@crm.example.com"}, "spec.config.url"),
    ({"url": "ftp://crm.example.com"}, "spec.config.url"),
    ({"url": "https://crm.example.com", "api_key": "x"}, "spec.config"),
])
def test_an_oauth2_requirement_fixes_a_literal_url(owner, world, config, field):
    base = f"/v1/workflows/{world.workflow.id}/requirements"
    spec = {"connection_type": "oauth2", "provider_id": str(world.provider.id)}
    if config is not None:
        spec["config"] = config
    response = owner.post(base, {"name": "crm", "title": "Your CRM", "spec": spec}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]


def test_builder_fixed_config_is_accepted_for_other_types(owner, world):
    # SPEC §13 (was refused for non-oauth2 types before the builder-fixed fields were built).
    base = f"/v1/workflows/{world.workflow.id}/requirements"
    response = owner.post(base, {"name": "x", "title": "x", "spec": {"connection_type": "http_api_key",
                                                                      "config": {"url": "https://a.example.com"}}},
                          format="json")
    assert response.status_code == 201, response.content
    assert response.json()["data"]["spec"]["config"] == {"url": "https://a.example.com"}


@pytest.mark.parametrize("spec, field", [
    ({"connection_type": "http_api_key", "config": {"api_key": "x"}}, "spec.config"),  # a secret
    ({"connection_type": "http", "config": {"headers": {"X-Team": "a"}}}, "spec.config"),  # every value secret
    ({"connection_type": "http_api_key", "config": {"colour": "blue"}}, "spec.config"),  # unknown
    ({"connection_type": "http_api_key", "config": {"url": "https://{tenant}.example.com"}}, "spec.config.url"),
    ({"connection_type": "http_api_key", "config": {"url": "https://u:p@a.example.com"}}, "spec.config.url"),
    ({"connection_type": "openai", "config": {"base_url": ""}}, "spec.config.base_url"),
    ({"connection_type": "postgresql", "config": {"port": 70000}}, "spec.config.port"),
    ({"connection_type": "http_api_key", "verify": {"path": "https://evil.example/me"}}, "spec.verify.path"),
    ({"connection_type": "http_api_key", "verify": {"path": "//evil.example/me"}}, "spec.verify.path"),
    ({"connection_type": "http_api_key", "verify": {"path": "/me", "method": "DELETE"}}, "spec.verify.method"),
    ({"connection_type": "http_api_key", "verify": {"path": "/me", "expect": [500]}}, "spec.verify.expect"),
    ({"connection_type": "http_api_key", "verify": {"path": "/me", "account": {"label": "$.email"}}},
     "spec.verify.account"),
    ({"connection_type": "http_api_key", "verify": {"path": "/me", "account": {"id": "$..x"}}}, "spec.verify.account"),
    ({"connection_type": "postgresql", "verify": {"path": "/me"}}, "spec.verify"),
])
def test_builder_fixed_fields_and_probes_are_validated(owner, world, spec, field):
    base = f"/v1/workflows/{world.workflow.id}/requirements"
    response = owner.post(base, {"name": "x", "title": "x", "spec": spec}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"], response.json()


def test_a_probe_is_stored_normalized(owner, world):
    base = f"/v1/workflows/{world.workflow.id}/requirements"
    spec = {"connection_type": "http_api_key", "config": {"url": "https://a.example.com", "prefix": ""},
            "verify": {"path": "/v1/me", "account": {"id": "$.data.id", "label": "data.email"}}}
    response = owner.post(base, {"name": "x", "title": "x", "spec": spec}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["data"]["spec"]["verify"] == {
        "method": "GET", "path": "/v1/me", "account": {"id": "$.data.id", "label": "data.email"}}


def test_versions_are_numbered_and_immutable(owner, world):
    base = f"/v1/workflows/{world.workflow.id}/versions"
    definition = factories.definition(
        factories.http_node("mine", ref={"requirement": str(world.requirement.id)}, url="https://billing.example.com/z"))
    response = owner.post(base, {"definition": definition, "description": "second"}, format="json")
    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert data["number"] == 2 and data["requirement_ids"] == [str(world.requirement.id)]
    assert data["definition"] == definition and data["created_by"].startswith("access_key:dynamiq_acc_")
    assert owner.get(f"/v1/workflows/{world.workflow.id}").json()["data"]["latest_version"] == 2
    listed = owner.get(base).json()["data"]
    assert [v["number"] for v in listed] == [2, 1]
    assert owner.get(f"{base}/{data['id']}").json()["data"] == data
    # No way to change a version.
    for method in ("put", "patch", "delete"):
        assert getattr(owner, method)(f"{base}/{data['id']}", {}, format="json").status_code == 405


def test_an_invalid_definition_is_400_with_details(owner, world):
    bad = {"nodes": [{"id": "input", "type": "input", "fields": {}},
                     {"id": "call", "type": "http", "depends_on": ["input"],
                      "config": {"url": "https://x.example.com", "headers": {"Authorization": "Bearer inline"}}},
                     {"id": "output", "type": "output", "depends_on": ["call"], "fields": {}}]}
    response = owner.post(f"/v1/workflows/{world.workflow.id}/versions", {"definition": bad}, format="json")
    assert response.status_code == 400
    assert "nodes.1.config.headers.Authorization" in response.json()["error"]["details"]
    response = owner.post(f"/v1/workflows/{world.workflow.id}/versions", {"definition": "nope"}, format="json")
    assert response.status_code == 400
    assert WorkflowVersion.objects.filter(workflow=world.workflow).count() == 1


def test_a_definition_cannot_reference_another_projects_connection(owner, world, teammate_project):
    foreign = factories.make_connection(teammate_project, name="theirs")
    definition = factories.definition(factories.http_node("x", ref={"id": str(foreign.id)}, url="https://b.example.com"))
    response = owner.post(f"/v1/workflows/{world.workflow.id}/versions", {"definition": definition}, format="json")
    assert response.status_code == 400


def test_it_refuses_the_wrong_actor_and_method(world, teammate, outsider, anonymous, owner):
    wf = world.workflow
    urls = [f"/v1/workflows/{wf.id}", f"/v1/workflows/{wf.id}/requirements",
            f"/v1/workflows/{wf.id}/requirements/{world.requirement.id}", f"/v1/workflows/{wf.id}/versions",
            f"/v1/workflows/{wf.id}/versions/{world.version.id}"]
    for client in (teammate, outsider):
        for url in urls:
            assert client.get(url).status_code == 404
        assert client.post(f"/v1/workflows/{wf.id}/versions", {"definition": world.version.definition},
                           format="json").status_code == 404
    for url in urls:
        assert anonymous.get(url).status_code == 401
    assert owner.delete(f"/v1/workflows/{wf.id}").status_code == 405
