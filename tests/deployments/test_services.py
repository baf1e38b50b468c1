"""Apps and deployments: hostnames, deploy, one active deployment per App (in the database), rollback."""

from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, transaction

from apps.connect.selectors import requirement_statuses
from apps.core.errors import BadRequest, Conflict, NotFound
from apps.deployments.models import App, Deployment
from apps.deployments.selectors import app_route, deployment_history
from apps.deployments.services import app_create, app_update, deploy, rollback
from tests import factories
from tests.core.rawsql import raw_column

pytestmark = pytest.mark.django_db


@pytest.fixture
def workflow(project):
    return factories.make_workflow(project)


@pytest.fixture
def versions(workflow):
    """Three versions of the same workflow."""
    return [
        factories.make_version(workflow, factories.definition(
            factories.http_node("call", ref=None, url=f"https://v{n}.example.com/x")
        ))
        for n in (1, 2, 3)
    ]


@pytest.fixture
def app(project):
    return factories.make_app(project)


def active(app) -> list[Deployment]:
    return list(Deployment.objects.filter(app=app, status=Deployment.Status.ACTIVE))


class TestAppCreate:
    def test_the_hostname_is_the_app_id_under_apps_domain(self, project, settings):
        settings.APPS_DOMAIN = "apps.example.com"
        app = app_create(project=project, name="Invoice bot")
        assert app.hostname == f"{app.id}.apps.example.com"
        uuid.UUID(app.hostname.split(".")[0])
        assert app.access_type == App.AccessType.PRIVATE
        assert app_route(hostname=app.hostname)[0] == app

    def test_hostnames_are_unique(self, project):
        first = app_create(project=project, name="one")
        second = app_create(project=project, name="two")
        assert first.hostname != second.hostname

    def test_the_database_enforces_unique_hostnames(self, project, app):
        with pytest.raises(IntegrityError), transaction.atomic():
            App.objects.create(project=project, name="copy", hostname=app.hostname)

    def test_a_custom_hostname_is_normalized_and_must_be_free(self, project, teammate_project):
        app = app_create(project=project, name="custom", hostname="Bot.Example.COM.")
        assert app.hostname == "bot.example.com"
        with pytest.raises(Conflict) as exc:
            app_create(project=teammate_project, name="custom", hostname="bot.example.com")
        assert exc.value.details == {"hostname": ["bot.example.com"]}

    @pytest.mark.parametrize("hostname", ["localhost", "testserver", "not a host", "-bad-.example.com", "single"])
    def test_platform_or_invalid_hostnames_are_refused(self, project, hostname):
        with pytest.raises(BadRequest) as exc:
            app_create(project=project, name="x", hostname=hostname)
        assert "hostname" in exc.value.details

    def test_it_validates(self, project, app):
        with pytest.raises(BadRequest):
            app_create(project=project, name="  ")
        with pytest.raises(BadRequest):
            app_create(project=project, name="x", access_type="secret")
        with pytest.raises(BadRequest):
            app_create(project=project, name="x", allowed_redirect_origins=["javascript:alert(1)"])
        with pytest.raises(Conflict):
            app_create(project=project, name=app.name)

    def test_redirect_origins_are_normalized(self, project):
        app = app_create(project=project, name="x", allowed_redirect_origins=[
            "https://Shop.Example.com/return?x=1", "https://shop.example.com", "http://localhost:3000/cb",
        ])
        assert app.allowed_redirect_origins == ["https://shop.example.com", "http://localhost:3000"]

    def test_it_gets_an_encrypted_callback_signing_secret(self, project, app):
        assert app.callback_signing_secret.startswith("whsec_") and len(app.callback_signing_secret) > 40
        stored = raw_column(App, "callback_signing_secret")[str(app.id)]
        assert stored.startswith("gAAAAA") and app.callback_signing_secret not in stored
        other = app_create(project=project, name="other")
        assert other.callback_signing_secret != app.callback_signing_secret

    def test_app_update_keeps_the_hostname(self, project, app):
        hostname = app.hostname
        app_update(app=app, name="Renamed", access_type="public")
        app.refresh_from_db()
        assert (app.name, app.access_type, app.hostname) == ("Renamed", "public", hostname)


IP_LITERALS = [
    "127.0.0.2", "10.0.0.1", "127.1", "0x7f.1", "0x7f.0.0.1", "0177.0.0.1", "2130706433", "0x7f000001",
    "127.0.0.1.", "::1", "[::1]", "fd00::1", "[::ffff:127.0.0.1]", "169.254.169.254",
]


class TestCustomHostnameRules:
    """SPEC §12: IP literals, the platform's names and foreign names under APPS_DOMAIN are refused."""

    @pytest.mark.parametrize("hostname", IP_LITERALS)
    def test_ip_literals_in_any_form_are_refused(self, project, hostname):
        with pytest.raises(BadRequest) as exc:
            app_create(project=project, name="x", hostname=hostname)
        assert exc.value.details == {"hostname": ["must be a DNS name, not an IP address"]}
        assert not App.objects.filter(name="x").exists()

    @pytest.mark.parametrize("hostname", ["admin.apps.example.com", "apps.example.com", "Other.Apps.Example.COM.",
                                          f"{uuid.uuid4()}.apps.example.com", "platform.example.com",
                                          "admin.platform.example.com", "localhost", "testserver"])
    def test_platform_names_and_names_under_apps_domain_are_refused(self, project, settings, hostname):
        settings.APPS_DOMAIN = "apps.example.com"
        settings.PLATFORM_HOST = "platform.example.com"
        with pytest.raises(BadRequest) as exc:
            app_create(project=project, name="x", hostname=hostname)
        assert "hostname" in exc.value.details

    def test_a_taken_name_is_refused_whatever_its_case_or_trailing_dot(self, project, teammate_project):
        app_create(project=project, name="first", hostname="bot.example.com")
        for variant in ("BOT.example.com", "bot.example.com.", " Bot.Example.Com. "):
            with pytest.raises(Conflict) as exc:
                app_create(project=teammate_project, name=f"copy {variant}", hostname=variant)
            assert exc.value.details == {"hostname": ["bot.example.com"]}

    def test_an_app_may_change_to_a_free_name_and_back_to_its_own_default(self, project, app, settings):
        own = f"{app.id}.{settings.APPS_DOMAIN}"
        app_update(app=app, hostname="Assistant.Example.com.")
        app.refresh_from_db()
        assert app.hostname == "assistant.example.com"
        assert app_route(hostname="assistant.example.com")[0] == app
        app_update(app=app, hostname=own)
        app.refresh_from_db()
        assert app.hostname == own

    def test_update_refuses_the_same_rules(self, project, app, settings):
        other = factories.make_app(project, name="other")
        app_create(project=project, name="custom", hostname="taken.example.com")
        for hostname, error in [("127.1", BadRequest), (other.hostname, BadRequest), ("localhost", BadRequest),
                                ("TAKEN.example.com.", Conflict)]:
            with pytest.raises(error):
                app_update(app=app, hostname=hostname)
        app.refresh_from_db()
        assert app.hostname == f"{app.id}.{settings.APPS_DOMAIN}"

    def test_a_dns_name_that_only_looks_numeric_inside_is_accepted(self, project):
        assert app_create(project=project, name="x", hostname="127-0-0-1.example.com").hostname == "127-0-0-1.example.com"
        assert app_create(project=project, name="y", hostname="0x7f.example.com").hostname == "0x7f.example.com"


class TestIpLiteralRouting:
    """Old rows: a release before SPEC §12 could store an IP literal; the middleware never routes it."""

    @pytest.mark.parametrize("hostname", ["127.0.0.2", "10.0.0.1", "2130706433", "0x7f.1"])
    def test_a_stored_ip_literal_does_not_reach_the_app(self, client, project, hostname):
        app = factories.make_app(project, name="old")
        App.objects.filter(pk=app.pk).update(hostname=hostname)  # as an older release stored it
        response = client.get("/v1/requirements/status", {"user_id": "u"}, HTTP_HOST=hostname)
        assert response.status_code == 400
        assert response.json()["error"] == {"code": "bad_request", "message": "Unknown host.", "details": {}}
        # The App's own name still routes.
        App.objects.filter(pk=app.pk).update(hostname="old.example.com")
        # (private App, no key: 401 from the App API, not 400 from the router)
        assert client.get("/v1/requirements/status", {"user_id": "u"}, HTTP_HOST="old.example.com").status_code == 401


class TestDeploy:
    def test_deploy_makes_the_version_live(self, app, versions):
        deployment = deploy(app=app, version=versions[0], actor="user:alice")
        app.refresh_from_db()
        assert app.current_deployment == deployment
        assert deployment.status == Deployment.Status.ACTIVE and deployment.created_by == "user:alice"
        assert app_route(hostname=app.hostname)[0].current_deployment.workflow_version == versions[0]

    def test_a_new_deploy_supersedes_the_previous_one(self, app, versions):
        first = deploy(app=app, version=versions[0])
        second = deploy(app=app, version=versions[1])
        first.refresh_from_db()
        assert first.status == Deployment.Status.SUPERSEDED
        assert active(app) == [second]
        app.refresh_from_db()
        assert app.current_deployment == second
        assert list(deployment_history(app=app)) == [second, first]

    def test_the_database_allows_one_active_deployment_per_app(self, app, versions):
        deploy(app=app, version=versions[0])
        with pytest.raises(IntegrityError), transaction.atomic():
            Deployment.objects.create(app=app, workflow_version=versions[1], status=Deployment.Status.ACTIVE)
        assert len(active(app)) == 1

    def test_other_apps_have_their_own_active_deployment(self, project, app, versions):
        other = factories.make_app(project, name="other")
        deploy(app=app, version=versions[0])
        deploy(app=other, version=versions[0])
        assert len(active(app)) == 1 and len(active(other)) == 1

    def test_the_database_refuses_an_unknown_status(self, app, versions):
        with pytest.raises(IntegrityError), transaction.atomic():
            Deployment.objects.create(app=app, workflow_version=versions[0], status="paused")

    def test_a_version_of_another_project_is_not_found(self, app, teammate_project):
        foreign = factories.make_version(factories.make_workflow(teammate_project), factories.definition())
        with pytest.raises(NotFound):
            deploy(app=app, version=foreign)
        assert not Deployment.objects.filter(app=app).exists()

    def test_a_deployed_version_is_protected(self, app, versions):
        deploy(app=app, version=versions[0])
        from django.db.models import ProtectedError

        with pytest.raises(ProtectedError), transaction.atomic():
            type(versions[0]).objects.filter(pk=versions[0].pk).delete()

    def test_deployed_requirements(self, project, workflow, app):
        requirement = factories.make_requirement(workflow)
        version = factories.make_version(workflow, factories.definition(
            factories.http_node("call", ref={"requirement": str(requirement.id)}, url="https://billing.example.com/x"),
        ))
        assert requirement_statuses(app=app, user_id="user-42") == []
        deploy(app=app, version=version)
        app.refresh_from_db()
        assert [s.requirement for s in requirement_statuses(app=app, user_id="user-42")] == [requirement]


class TestRollback:
    def test_rollback_redeploys_the_previous_version(self, app, versions):
        deploy(app=app, version=versions[0])
        second = deploy(app=app, version=versions[1])
        back = rollback(app=app, actor="user:alice")
        assert back.workflow_version == versions[0]
        assert back.rolled_back_from == second and back.created_by == "user:alice"
        assert active(app) == [back]
        app.refresh_from_db()
        assert app.current_deployment == back
        assert Deployment.objects.filter(app=app).count() == 3  # history keeps every deployment

    def test_rollback_to_a_given_deployment(self, app, versions):
        first = deploy(app=app, version=versions[0])
        deploy(app=app, version=versions[1])
        third = deploy(app=app, version=versions[2])
        back = rollback(app=app, deployment=first)
        assert back.workflow_version == versions[0] and back.rolled_back_from == third
        assert active(app) == [back]

    def test_nothing_to_roll_back(self, project, app, versions):
        with pytest.raises(Conflict):
            rollback(app=app)
        deploy(app=app, version=versions[0])
        with pytest.raises(Conflict):
            rollback(app=app)
        assert len(active(app)) == 1

    def test_a_deployment_of_another_app_is_not_found(self, project, app, versions):
        other = factories.make_app(project, name="other")
        foreign = deploy(app=other, version=versions[0])
        deploy(app=app, version=versions[1])
        with pytest.raises(NotFound):
            rollback(app=app, deployment=foreign)
        assert active(app)[0].workflow_version == versions[1]


def test_rollback_skips_deployments_of_the_live_version(app, versions):
    """Found in review: v1, v2, v2 again -> rollback must go to v1, not 'redeploy' v2."""
    deploy(app=app, version=versions[0])
    deploy(app=app, version=versions[1])
    deploy(app=app, version=versions[1])
    back = rollback(app=app)
    assert back.workflow_version == versions[0]
