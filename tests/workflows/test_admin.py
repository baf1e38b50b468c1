"""Workflows and requirements in the admin: added through services, requirement edits change the title only."""

from __future__ import annotations

import json
import uuid

from django.urls import reverse

from apps.workflows.models import Requirement, Workflow, WorkflowVersion

# ---- workflows and requirements ------------------------------------------------------------------

def test_workflow_and_requirement_are_added_through_services(operator_client, world):
    response = operator_client.post(reverse("admin:workflows_workflow_add"), {
        "project": str(world.project.pk), "name": "triage", "description": "",
        "requirements-TOTAL_FORMS": "0", "requirements-INITIAL_FORMS": "0",
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    workflow = Workflow.objects.get(name="triage")
    response = operator_client.post(reverse("admin:workflows_requirement_add"), {
        "workflow": str(workflow.pk), "name": "Billing", "title": "T", "connection_type": "http_api_key",
    })
    assert response.status_code == 200 and "machine name" in response.content.decode()
    oauth_form = {"workflow": str(workflow.pk), "name": "crm", "title": "Your CRM", "connection_type": "oauth2",
                  "provider": str(world.provider.pk), "scopes": "contacts.read"}
    # An OAuth2 requirement fixes the origin its end users' tokens may go to (SPEC §12/§13).
    response = operator_client.post(reverse("admin:workflows_requirement_add"), oauth_form)
    assert response.status_code == 200 and "needs the API&#x27;s base URL" in response.content.decode()
    response = operator_client.post(reverse("admin:workflows_requirement_add"),
                                    {**oauth_form, "url": "https://crm.example.com/api"})
    assert response.status_code == 302, response.content.decode()[:3000]
    requirement = Requirement.objects.get(workflow=workflow, name="crm")
    assert requirement.spec == {"connection_type": "oauth2", "provider_id": str(world.provider.pk),
                                "scopes": ["contacts.read"], "config": {"url": "https://crm.example.com/api"}}


def test_requirement_edit_changes_title_only(operator_client, world):
    requirement = world.requirement
    response = operator_client.post(reverse("admin:workflows_requirement_change", args=[requirement.pk]), {
        "title": "Billing account", "description": "d", "name": "renamed",
    })
    assert response.status_code == 302
    requirement.refresh_from_db()
    assert (requirement.name, requirement.title, requirement.description) == ("billing", "Billing account", "d")


# ---- versions ------------------------------------------------------------------------------------

def test_a_version_is_added_from_the_workflow_page_starting_from_the_latest_definition(operator_client, world):
    page = operator_client.get(reverse("admin:workflows_workflow_change", args=[world.workflow.pk])).content.decode()
    add_url = reverse("admin:workflows_workflowversion_add") + f"?workflow={world.workflow.pk}"
    assert add_url in page and "Add a version…" in page
    form = operator_client.get(add_url).content.decode()
    assert "&quot;mine&quot;" in form  # v2's definition, indented JSON, to edit
    definition = dict(world.v2.definition)
    response = operator_client.post(reverse("admin:workflows_workflowversion_add"), {
        "workflow": world.workflow.pk, "description": "from the admin", "definition": json.dumps(definition),
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    version = WorkflowVersion.objects.get(workflow=world.workflow, number=3)
    assert version.description == "from the admin" and version.created_by == "user:operator"
    assert list(version.requirements.all()) == [world.requirement]  # references stored by the service


def test_an_invalid_definition_is_refused_with_each_problem_and_its_path(operator_client, world):
    definition = {"nodes": [
        {"id": "input", "type": "input"},
        {"id": "call", "type": "http", "depends_on": ["input"], "connection": {"id": str(uuid.uuid4())},
         "config": {"url": "https://api.example.com", "headers": {"Authorization": "Bearer sk-inline"}}},
    ]}
    response = operator_client.post(reverse("admin:workflows_workflowversion_add"), {
        "workflow": world.workflow.pk, "description": "", "definition": json.dumps(definition),
    })
    body = response.content.decode()
    assert response.status_code == 200
    assert "nodes.1.connection.id: no shared connection with this ID in the project" in body
    assert "nodes.1.config.headers.Authorization: " in body
    assert WorkflowVersion.objects.filter(workflow=world.workflow).count() == 2


def test_a_definition_that_is_not_json_is_refused(operator_client, world):
    response = operator_client.post(reverse("admin:workflows_workflowversion_add"), {
        "workflow": world.workflow.pk, "description": "", "definition": "{nodes: [",
    })
    assert response.status_code == 200 and "Enter a valid JSON." in response.content.decode()
    assert WorkflowVersion.objects.filter(workflow=world.workflow).count() == 2


def test_versions_stay_immutable(operator_client, world):
    url = reverse("admin:workflows_workflowversion_change", args=[world.v1.pk])
    assert operator_client.post(url, {"description": "changed"}).status_code == 403
    assert operator_client.get(reverse("admin:workflows_workflowversion_delete", args=[world.v1.pk])).status_code == 403


def test_a_requirement_with_fixed_fields_and_a_probe_is_added_in_the_admin(operator_client, world):
    form = {"workflow": str(world.workflow.pk), "name": "ledger", "title": "Your ledger", "connection_type": "http_api_key",
            "fixed_config": json.dumps({"url": "https://api.ledger.example", "header": "X-Api-Key", "prefix": ""}),
            "verify": json.dumps({"path": "/v1/me", "account": {"id": "$.id"}})}
    response = operator_client.post(reverse("admin:workflows_requirement_add"), form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Requirement.objects.get(workflow=world.workflow, name="ledger").spec == {
        "connection_type": "http_api_key", "config": {"url": "https://api.ledger.example", "header": "X-Api-Key",
                                                      "prefix": ""},
        "verify": {"method": "GET", "path": "/v1/me", "account": {"id": "$.id"}}}


def test_the_admin_refuses_a_fixed_secret_and_a_probe_url(operator_client, world):
    form = {"workflow": str(world.workflow.pk), "name": "ledger", "title": "Your ledger", "connection_type": "http_api_key",
            "fixed_config": json.dumps({"api_key": "not-here"}), "verify": json.dumps({"path": "https://evil.example/"})}
    response = operator_client.post(reverse("admin:workflows_requirement_add"), form)
    assert response.status_code == 200
    assert "secret field cannot be fixed" in response.content.decode()
    assert not Requirement.objects.filter(name="ledger").exists()
