"""Apps in the admin: signing secret shown once, origins and hostname checked, rollback and deploy."""

from __future__ import annotations

from django.contrib.messages import get_messages
from django.urls import reverse

from apps.deployments.models import App, Deployment
from tests import factories
from tests.support.admin import assert_no_secret, changelist_action


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


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


def test_rollback_button_shows_the_version_it_goes_back_to(operator_client, world):
    body = operator_client.get(reverse("admin:deployments_app_change", args=[world.app.pk])).content.decode()
    assert "Roll back to invoices v1…" in body
    assert reverse("admin:deployments_app_rollback", args=[world.app.pk]) in body


def test_no_rollback_button_without_an_earlier_version(operator_client, world):
    lonely = factories.make_app(world.project, name="Lonely", version=world.v1)
    body = operator_client.get(reverse("admin:deployments_app_change", args=[lonely.pk])).content.decode()
    assert "Nothing to roll back to" in body
    assert reverse("admin:deployments_app_rollback", args=[lonely.pk]) not in body


def test_rollback_action_does_not_offer_to_roll_back_what_cannot_be(operator_client, world):
    lonely = factories.make_app(world.project, name="Lonely", version=world.v1)
    url = reverse("admin:deployments_app_changelist")
    response = changelist_action(operator_client, url, "rollback_apps", [lonely.pk])
    assert response.status_code == 302  # no confirmation page, no "Yes, roll back" button
    assert messages_of(response) == ["Lonely: There is no earlier version of this workflow to roll back to."]
    both = changelist_action(operator_client, url, "rollback_apps", [lonely.pk, world.app.pk])
    body = both.content.decode()
    assert both.status_code == 200 and "Yes, roll back" in body
    assert "invoices v2 → invoices v1" in body and "Lonely:" not in body.split("<form")[0].split("<ul>")[-1]
    assert f'value="{lonely.pk}"' not in body


def test_rollback_from_the_app_page_confirms_then_redeploys(operator_client, world):
    url = reverse("admin:deployments_app_rollback", args=[world.app.pk])
    page = operator_client.get(url)
    assert page.status_code == 200 and "invoices v2 → invoices v1" in page.content.decode()
    assert Deployment.objects.filter(app=world.app).count() == 2
    response = operator_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    world.app.refresh_from_db()
    assert world.app.current_deployment.workflow_version == world.v1
    assert messages_of(response) == [f"{world.app.name}: now serving invoices v1."]
    # Now v1 is live and v2 is the earlier one: the button offers v2.
    body = operator_client.get(reverse("admin:deployments_app_change", args=[world.app.pk])).content.decode()
    assert "Roll back to invoices v2…" in body
