from __future__ import annotations

import pytest

from apps.connect.models import EndUserLink
from apps.connections.models import Connection
from apps.deployments.models import App
from tests import factories
from tests.conftest import assert_no_canary
from tests.factories import CANARIES

pytestmark = pytest.mark.django_db


def test_it_creates_an_app_and_shows_the_signing_secret_once(owner, project, settings):
    response = owner.post("/v1/apps", {"name": "Bot", "allowed_redirect_origins": ["https://example.com/after"]},
                          format="json")
    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert data["hostname"] == f"{data['id']}.{settings.APPS_DOMAIN}"
    assert data["access_type"] == "private" and data["allowed_redirect_origins"] == ["https://example.com"]
    assert data["current_deployment_id"] is None and data["workflow_version_id"] is None
    secret = data["callback_signing_secret"]
    assert secret.startswith("whsec_") and App.objects.get(id=data["id"]).callback_signing_secret == secret
    for later in (owner.get(f"/v1/apps/{data['id']}"), owner.get("/v1/apps"),
                  owner.patch(f"/v1/apps/{data['id']}", {"name": "Bot 2"}, format="json")):
        assert later.status_code == 200
        assert secret not in later.content.decode()
        assert "callback_signing_secret" not in later.content.decode()


def test_it_validates_apps(owner, world):
    assert owner.post("/v1/apps", {"name": "x", "access_type": "secret"}, format="json").status_code == 400
    assert owner.post("/v1/apps", {"name": "x", "allowed_redirect_origins": ["javascript:alert(1)"]},
                      format="json").status_code == 400
    assert owner.post("/v1/apps", {"name": "Invoice bot"}, format="json").status_code == 409



def test_it_validates_custom_hostnames(org, world):
    # Was `owner.post(... "localhost") == 400`: the platform's name is still refused, now asked by an
    # organization-wide key, because a project key is refused before validation (403, SPEC §12).
    assert org.post("/v1/apps", {"name": "y", "hostname": "localhost", "project_id": str(world.project.id)},
                    format="json").status_code == 400


@pytest.mark.parametrize("hostname", ["127.0.0.2", "10.0.0.1", "127.1", "0x7f.1", "2130706433", "::1", "[fd00::1]"])
def test_ip_literal_hostnames_are_refused(org, world, hostname):
    """Found in review: `127.0.0.2`, `10.0.0.1` and the like were accepted (first come, first served)."""
    created = org.post("/v1/apps", {"name": "y", "hostname": hostname, "project_id": str(world.project.id)},
                       format="json")
    patched = org.patch(f"/v1/apps/{world.app.id}", {"hostname": hostname}, format="json")
    for response in (created, patched):
        assert response.status_code == 400, response.content
        assert response.json()["error"]["details"] == {"hostname": ["must be a DNS name, not an IP address"]}
    assert not App.objects.filter(name="y").exists()


@pytest.mark.parametrize("name", ["admin", "apps-root", "other-app"])
def test_names_under_apps_domain_other_than_the_apps_own_are_refused(org, world, settings, name):
    other = factories.make_app(world.project, name="Other")
    hostname = {"admin": f"admin.{settings.APPS_DOMAIN}", "apps-root": settings.APPS_DOMAIN,
                "other-app": other.hostname.upper()}[name]
    created = org.post("/v1/apps", {"name": "y", "hostname": hostname, "project_id": str(world.project.id)},
                       format="json")
    patched = org.patch(f"/v1/apps/{world.app.id}", {"hostname": hostname}, format="json")
    assert (created.status_code, patched.status_code) == (400, 400)
    assert "hostname" in created.json()["error"]["details"] and "hostname" in patched.json()["error"]["details"]


def test_a_taken_hostname_is_409_whatever_its_case_or_trailing_dot(org, world):
    body = {"name": "first", "hostname": "bot.example.com", "project_id": str(world.project.id)}
    assert org.post("/v1/apps", body, format="json").status_code == 201
    for variant in ("BOT.Example.com", "bot.example.com."):
        again = org.post("/v1/apps", {**body, "name": f"second {variant}", "hostname": variant}, format="json")
        assert again.status_code == 409
        assert again.json()["error"]["details"] == {"hostname": ["bot.example.com"]}
        patched = org.patch(f"/v1/apps/{world.app.id}", {"hostname": variant}, format="json")
        assert patched.status_code == 409


def test_setting_a_hostname_needs_an_organization_wide_key(owner, org, world, settings):
    """A project-scoped key may create and edit Apps, but not claim a hostname (403, nothing written)."""
    created = owner.post("/v1/apps", {"name": "y", "hostname": "bot.example.com"}, format="json")
    assert created.status_code == 403
    assert created.json()["error"]["code"] == "forbidden"
    assert created.json()["error"]["details"] == {"hostname": ["needs an organization-wide access key"]}
    assert not App.objects.filter(name="y").exists()
    # Was `== 400` (hostname was not a PATCH field); changing it now exists and needs an org-wide key.
    patched = owner.patch(f"/v1/apps/{world.app.id}", {"hostname": "x.example.com", "name": "Renamed"}, format="json")
    assert patched.status_code == 403
    world.app.refresh_from_db()
    assert world.app.hostname == f"{world.app.id}.{settings.APPS_DOMAIN}" and world.app.name != "Renamed"
    assert owner.patch(f"/v1/apps/{world.app.id}", {"name": "Renamed"}, format="json").status_code == 200


def test_an_org_wide_key_changes_the_hostname_and_the_app_answers_there(org, owner, world, settings, caplog):
    caplog.set_level("INFO", logger="apps.deployments.services")
    response = org.patch(f"/v1/apps/{world.app.id}", {"hostname": "Assistant.Example.com."}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["data"]["hostname"] == "assistant.example.com"
    assert any("hostname changed" in r.getMessage() and "assistant.example.com" in r.getMessage()
               and "by access_key:" in r.getMessage() for r in caplog.records)
    routed = owner.get("/v1/requirements/status", {"user_id": "u"}, HTTP_HOST="assistant.example.com")
    assert routed.status_code == 200
    gone = owner.get("/v1/requirements/status", {"user_id": "u"}, HTTP_HOST=f"{world.app.id}.{settings.APPS_DOMAIN}")
    assert gone.status_code == 400
    back = org.patch(f"/v1/apps/{world.app.id}", {"hostname": f"{world.app.id}.{settings.APPS_DOMAIN}"}, format="json")
    assert back.status_code == 200


def test_patch_updates_access_type_and_origins(owner, world):
    response = owner.patch(f"/v1/apps/{world.app.id}",
                           {"access_type": "public", "allowed_redirect_origins": ["http://localhost:3000"]}, format="json")
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["access_type"] == "public" and data["allowed_redirect_origins"] == ["http://localhost:3000"]
    assert data["hostname"] == world.app.hostname


def test_deploy_and_history_newest_first(owner, world):
    v2 = factories.make_version(world.workflow, world.version.definition)
    response = owner.post(f"/v1/apps/{world.app.id}/deployments", {"workflow_version_id": str(v2.id)}, format="json")
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["version_number"] == 2 and data["status"] == "active" and data["app_id"] == str(world.app.id)
    history = owner.get(f"/v1/apps/{world.app.id}/deployments").json()["data"]
    assert [(d["version_number"], d["status"]) for d in history] == [(2, "active"), (1, "superseded")]
    app = owner.get(f"/v1/apps/{world.app.id}").json()["data"]
    assert app["current_deployment_id"] == data["id"] and app["workflow_version_id"] == str(v2.id)


def test_deploying_a_version_of_another_project_is_404(owner, world, teammate_project, outsider_project):
    for other in (teammate_project, outsider_project):
        workflow = factories.make_workflow(other, name=f"theirs-{other.name}")
        version = factories.make_version(workflow, factories.definition())
        response = owner.post(f"/v1/apps/{world.app.id}/deployments", {"workflow_version_id": str(version.id)},
                              format="json")
        assert response.status_code == 404
    assert owner.post(f"/v1/apps/{world.app.id}/deployments", {}, format="json").status_code == 400
    world.app.refresh_from_db()
    assert world.app.current_deployment_id == world.deployment.id


def test_rollback_redeploys_v1(owner, project):
    """Deploy v1, v2, roll back: v1 is live, the history has three entries newest first."""
    workflow = factories.make_workflow(project, "rollback")
    v1 = factories.make_version(workflow, factories.definition(output={"v": "one"}, input_fields={}))
    v2 = factories.make_version(workflow, factories.definition(output={"v": "two"}, input_fields={}))
    app_id = owner.post("/v1/apps", {"name": "Rolling"}, format="json").json()["data"]["id"]
    for version in (v1, v2):
        assert owner.post(f"/v1/apps/{app_id}/deployments", {"workflow_version_id": str(version.id)},
                          format="json").status_code == 201
    current = owner.get(f"/v1/apps/{app_id}").json()["data"]["current_deployment_id"]
    response = owner.post(f"/v1/apps/{app_id}/rollback", {}, format="json")
    assert response.status_code == 201, response.content
    rolled = response.json()["data"]
    assert rolled["workflow_version_id"] == str(v1.id) and rolled["version_number"] == 1
    assert rolled["rolled_back_from"] == current
    history = owner.get(f"/v1/apps/{app_id}/deployments").json()["data"]
    assert [d["version_number"] for d in history] == [1, 2, 1]
    assert [d["status"] for d in history] == ["active", "superseded", "superseded"]
    app = App.objects.select_related("current_deployment__workflow_version").get(id=app_id)
    assert app.current_deployment.workflow_version_id == v1.id
    assert owner.get(f"/v1/apps/{app_id}").json()["data"]["workflow_version_id"] == str(v1.id)
    # Runs use v1.
    run = owner.post(f"/apps/{app_id}/v1/runs", {"input": {}}, format="json")
    assert run.status_code == 200, run.content
    assert run.json()["output"] == {"v": "one"}


def test_rollback_to_a_named_deployment_and_refusals(owner, world):
    first = world.deployment
    assert owner.post(f"/v1/apps/{world.app.id}/rollback", {}, format="json").status_code == 409  # nothing earlier
    v2 = factories.make_version(world.workflow, world.version.definition)
    owner.post(f"/v1/apps/{world.app.id}/deployments", {"workflow_version_id": str(v2.id)}, format="json")
    response = owner.post(f"/v1/apps/{world.app.id}/rollback", {"deployment_id": str(first.id)}, format="json")
    assert response.status_code == 201 and response.json()["data"]["version_number"] == 1
    other_app = factories.make_app(world.project, name="Other", version=world.version)
    response = owner.post(f"/v1/apps/{world.app.id}/rollback",
                          {"deployment_id": str(other_app.current_deployment_id)}, format="json")
    assert response.status_code == 404


def test_links_list_filter_and_delete(owner, world):
    second_requirement = factories.make_requirement(world.workflow, name="crm", title="CRM")
    factories.link_end_user(world.app, second_requirement, "user-42",
                            {"url": "https://crm.example.com", "api_key": CANARIES["user43_api_key"]}, status="expired")
    factories.link_end_user(world.app, world.requirement, "user-43",
                            {"url": "https://billing.example.com", "api_key": CANARIES["user43_api_key"]})
    base = f"/v1/apps/{world.app.id}/links"
    response = owner.get(base)
    assert response.status_code == 200 and response.json()["pagination"]["total_count"] == 3
    assert_no_canary(response.content)
    mine = owner.get(base, {"user_id": "user-42"}).json()["data"]
    assert {link["requirement_id"] for link in mine} == {str(world.requirement.id), str(second_requirement.id)}
    expired = owner.get(base, {"status": "expired"}).json()["data"]
    assert [(x["user_id"], x["status"]) for x in expired] == [("user-42", "expired")]
    by_requirement = owner.get(base, {"requirement_id": str(world.requirement.id), "sort": "user_id"}).json()["data"]
    assert [x["user_id"] for x in by_requirement] == ["user-42", "user-43"]
    assert by_requirement[0] == {
        "id": str(world.link.id), "app_id": str(world.app.id), "user_id": "user-42",
        "requirement_id": str(world.requirement.id), "connection_id": str(world.link.connection_id), "status": "active",
        "health": "ok", "status_reason": "", "last_verified_at": None, "last_refreshed_at": None,
        "next_refresh_at": None,
        "account": None,  # SPEC §13: the linked account, when the verification or userinfo named it
        "created_at": by_requirement[0]["created_at"], "updated_at": by_requirement[0]["updated_at"],
    }
    assert owner.get(base, {"status": "nope"}).status_code == 400
    assert owner.get(base, {"requirement_id": "nope"}).status_code == 400

    response = owner.delete(f"{base}/{world.link.id}")
    assert response.status_code == 204
    assert not EndUserLink.objects.filter(id=world.link.id).exists()
    assert not Connection.objects.filter(id=world.link.connection_id).exists()
    assert owner.delete(f"{base}/{world.link.id}").status_code == 404


def test_it_refuses_the_wrong_actor_and_method(world, teammate, outsider, anonymous, owner):
    app = world.app
    for client in (teammate, outsider):
        assert client.get(f"/v1/apps/{app.id}").status_code == 404
        assert client.patch(f"/v1/apps/{app.id}", {"access_type": "public"}, format="json").status_code == 404
        assert client.get(f"/v1/apps/{app.id}/deployments").status_code == 404
        assert client.post(f"/v1/apps/{app.id}/deployments", {"workflow_version_id": str(world.version.id)},
                           format="json").status_code == 404
        assert client.post(f"/v1/apps/{app.id}/rollback", {}, format="json").status_code == 404
        assert client.get(f"/v1/apps/{app.id}/links").status_code == 404
        assert client.delete(f"/v1/apps/{app.id}/links/{world.link.id}").status_code == 404
    assert EndUserLink.objects.filter(id=world.link.id).exists()
    app.refresh_from_db()
    assert app.access_type == "private"
    assert anonymous.get("/v1/apps").status_code == 401
    assert owner.delete(f"/v1/apps/{app.id}").status_code == 405
    assert owner.get(f"/v1/apps/{app.id}/rollback").status_code == 405
    # A link of another App (even of the same project) is not found under this one.
    other = factories.make_app(world.project, name="Other")
    assert owner.delete(f"/v1/apps/{other.id}/links/{world.link.id}").status_code == 404


# SPEC §13 branding of the hosted connect page


def test_it_sets_and_shows_the_connect_page_branding(owner, world):
    response = owner.patch(f"/v1/apps/{world.app.id}", {
        "display_name": "Ledgerly", "logo_url": "https://cdn.ledgerly.example/logo.png", "accent_color": "#0A7D5A",
        "support_url": "https://help.ledgerly.example"}, format="json")
    assert response.status_code == 200, response.content
    data = response.json()["data"]
    assert (data["display_name"], data["logo_url"], data["accent_color"], data["support_url"]) == (
        "Ledgerly", "https://cdn.ledgerly.example/logo.png", "#0a7d5a", "https://help.ledgerly.example")


@pytest.mark.parametrize("field, value", [
    ("logo_url", "http://cdn.example/logo.png"),
    ("logo_url", "javascript:alert(1)"),
    ("logo_url", "https://user@cdn.example/logo.png"),
    ("support_url", "ftp://help.example"),
    ("accent_color", "red"),
    ("accent_color", "#12345"),
    ("accent_color", "#123456;}"),
])
def test_it_validates_the_branding(owner, world, field, value):
    response = owner.patch(f"/v1/apps/{world.app.id}", {field: value}, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_branding_can_be_given_at_creation_and_cleared(owner, project):
    created = owner.post("/v1/apps", {"name": "Branded", "accent_color": "#112233"}, format="json")
    assert created.status_code == 201, created.content
    app_id = created.json()["data"]["id"]
    assert created.json()["data"]["accent_color"] == "#112233"
    cleared = owner.patch(f"/v1/apps/{app_id}", {"accent_color": ""}, format="json")
    assert cleared.json()["data"]["accent_color"] == ""
