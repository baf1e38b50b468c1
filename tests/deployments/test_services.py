"""Apps and deployments: hostnames, deploy, one active deployment per App (in the database), rollback."""

from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, transaction

from apps.connect.selectors import requirement_statuses
from apps.core.errors import BadRequest, Conflict, NotFound
from apps.deployments.models import App, Deployment
from apps.deployments.selectors import app_for_hostname, deployment_history
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
        assert app_for_hostname(hostname=app.hostname) == app

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


class TestDeploy:
    def test_deploy_makes_the_version_live(self, app, versions):
        deployment = deploy(app=app, version=versions[0], actor="user:alice")
        app.refresh_from_db()
        assert app.current_deployment == deployment
        assert deployment.status == Deployment.Status.ACTIVE and deployment.created_by == "user:alice"
        assert app_for_hostname(hostname=app.hostname).current_deployment.workflow_version == versions[0]

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
