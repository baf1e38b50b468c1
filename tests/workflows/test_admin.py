"""Workflows and requirements in the admin: added through services, requirement edits change the title only."""

from __future__ import annotations

from django.urls import reverse

from apps.workflows.models import Requirement, Workflow

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
