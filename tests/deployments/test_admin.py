"""Access keys shown once, App rollback/deploy, end-user link revocation, requirement and workflow forms."""

from __future__ import annotations

import re

from django.contrib.messages import get_messages
from django.urls import reverse

from apps.accounts.models import AccessKey
from apps.accounts.selectors import access_key_authenticate
from apps.connect.models import EndUserLink
from apps.connections.models import Connection
from apps.deployments.models import App, Deployment
from apps.workflows.models import Requirement, Workflow
from tests import factories

from .conftest import assert_no_secret, changelist_action

KEY_RE = re.compile(r"dynamiq_acc_[A-Za-z0-9]{64}")


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# ---- access keys ---------------------------------------------------------------------------------

def test_access_key_is_shown_exactly_once(operator_client, world):
    response = operator_client.post(reverse("admin:accounts_accesskey_add"), {
        "organization": str(world.project.organization_id), "project": str(world.project.pk), "name": "deploy-bot",
    })
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    keys = set(KEY_RE.findall(response.content.decode()))
    assert len(keys) == 1
    raw = keys.pop()
    key = access_key_authenticate(raw_key=raw)
    assert key is not None and key.name == "deploy-bot" and key.project_id == world.project.pk
    assert key.created_by == "user:operator"
    # Never again: not in the list, the change page, or any message/cookie.
    for url in (reverse("admin:accounts_accesskey_changelist"), reverse("admin:accounts_accesskey_change", args=[key.pk])):
        body = operator_client.get(url).content.decode()
        assert raw not in body and key.preview in body
    assert raw not in str(operator_client.cookies)


def test_org_wide_key_and_project_of_another_org_is_refused(operator_client, world, outsider_project):
    url = reverse("admin:accounts_accesskey_add")
    response = operator_client.post(url, {"organization": str(world.project.organization_id),
                                          "project": str(outsider_project.pk), "name": "x"})
    assert response.status_code == 200 and "another organization" in response.content.decode()
    response = operator_client.post(url, {"organization": str(world.project.organization_id), "name": "org"})
    raw = KEY_RE.search(response.content.decode()).group(0)
    assert access_key_authenticate(raw_key=raw).is_org_wide


def test_revoke_action_confirms_then_revokes(operator_client, world):
    key = access_key_authenticate(raw_key=world.raw_key)
    url = reverse("admin:accounts_accesskey_changelist")
    response = changelist_action(operator_client, url, "revoke_keys", [key.pk])
    assert response.status_code == 200 and "Revoke them?" in response.content.decode()
    assert access_key_authenticate(raw_key=world.raw_key) is not None
    response = changelist_action(operator_client, url, "revoke_keys", [key.pk], post="yes")
    assert response.status_code == 302
    assert access_key_authenticate(raw_key=world.raw_key) is None
    assert AccessKey.objects.get(pk=key.pk).revoked_at is not None


# ---- apps ----------------------------------------------------------------------------------------

def test_app_is_created_with_its_signing_secret_shown_once(operator_client, world):
    response = operator_client.post(reverse("admin:deployments_app_add"), {
        "project": str(world.project.pk), "name": "Support bot", "hostname": "", "access_type": "public",
        "allowed_redirect_origins": "https://example.com/after\nhttp://localhost:3000",
        "deployments-TOTAL_FORMS": "0", "deployments-INITIAL_FORMS": "0",
    })
    assert response.status_code == 200, response.content.decode()[:2000]
    app = App.objects.get(name="Support bot")
    assert app.callback_signing_secret in response.content.decode()
    assert app.allowed_redirect_origins == ["https://example.com", "http://localhost:3000"]
    assert app.hostname == f"{app.id}.apps.localhost"
    body = operator_client.get(reverse("admin:deployments_app_change", args=[app.pk])).content.decode()
    assert app.callback_signing_secret not in body and "shown once" in body


def test_app_form_validates_origins_and_hostname(operator_client, world):
    response = operator_client.post(reverse("admin:deployments_app_add"), {
        "project": str(world.project.pk), "name": "Bad", "hostname": "testserver", "access_type": "private",
        "allowed_redirect_origins": "javascript:alert(1)",
        "deployments-TOTAL_FORMS": "0", "deployments-INITIAL_FORMS": "0",
    })
    body = response.content.decode()
    assert response.status_code == 200 and "is not an origin" in body and "not used by the platform" in body
    assert not App.objects.filter(name="Bad").exists()


def test_rollback_action_confirms_then_redeploys_the_previous_version(operator_client, world):
    app = world.app
    assert app.current_deployment.workflow_version == world.v2
    url = reverse("admin:deployments_app_changelist")
    response = changelist_action(operator_client, url, "rollback_apps", [app.pk])
    assert response.status_code == 200
    assert "invoices v2 → invoices v1" in response.content.decode()
    response = changelist_action(operator_client, url, "rollback_apps", [app.pk], post="yes")
    assert response.status_code == 302
    app.refresh_from_db()
    current = app.current_deployment
    assert current.workflow_version == world.v1 and current.created_by == "user:operator"
    assert current.rolled_back_from.workflow_version == world.v2
    assert Deployment.objects.filter(app=app).count() == 3
    assert messages_of(response) == [f"{app.name}: now serving invoices v1."]


def test_rollback_without_history_reports_an_error(operator_client, world):
    lonely = factories.make_app(world.project, name="Lonely", version=world.v1)
    url = reverse("admin:deployments_app_changelist")
    response = changelist_action(operator_client, url, "rollback_apps", [lonely.pk], post="yes")
    assert messages_of(response) == ["Lonely: There is no earlier version of this workflow to roll back to."]


def test_app_change_page_shows_history_newest_first(operator_client, world):
    body = operator_client.get(reverse("admin:deployments_app_change", args=[world.app.pk])).content.decode()
    assert body.index("invoices v2") < body.index("invoices v1")
    assert_no_secret(body, world.secrets)


def test_deploy_view_deploys_a_version_of_the_same_project_only(operator_client, world, outsider_project):
    other_wf = factories.make_workflow(outsider_project, name="elsewhere")
    other = factories.make_version(other_wf, factories.definition(
        factories.http_node("x", ref=None, url="https://example.com")))
    url = reverse("admin:deployments_app_deploy", args=[world.app.pk])
    body = operator_client.get(url).content.decode()
    assert "invoices v1" in body and "elsewhere" not in body
    response = operator_client.post(url, {"version": str(other.pk)})
    assert response.status_code == 200  # not a choice
    response = operator_client.post(url, {"version": str(world.v1.pk)})
    assert response.status_code == 302
    world.app.refresh_from_db()
    assert world.app.current_deployment.workflow_version == world.v1


# ---- end-user links ------------------------------------------------------------------------------

def test_revoke_link_action_deletes_the_link_and_its_connection(operator_client, world):
    link = world.links["user-42"]
    url = reverse("admin:connect_enduserlink_changelist")
    response = changelist_action(operator_client, url, "revoke_links", [link.pk])
    assert response.status_code == 200 and "user-42" in response.content.decode()
    assert EndUserLink.objects.filter(pk=link.pk).exists()
    response = changelist_action(operator_client, url, "revoke_links", [link.pk], post="yes")
    assert response.status_code == 302
    assert not EndUserLink.objects.filter(pk=link.pk).exists()
    assert not Connection.objects.filter(pk=link.connection_id).exists()
    assert EndUserLink.objects.filter(pk=world.links["user-43"].pk).exists()


def test_links_filter_by_connection_status(operator_client, world):
    Connection.objects.filter(pk=world.links["user-43"].connection_id).update(status="unauthorized")
    url = reverse("admin:connect_enduserlink_changelist")
    body = operator_client.get(url + "?status=unauthorized").content.decode()
    assert "user-43" in body and "user-42" not in body
    body = operator_client.get(url + "?q=user-42").content.decode()
    assert "user-42" in body and "user-43" not in body


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
