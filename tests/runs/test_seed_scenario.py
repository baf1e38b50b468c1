"""The seed's scenario end to end: one version, a shared connection on one node and a requirement on
another; two runs that differ only in user_id use each user's own credential."""

import pytest

from tests import factories
from tests.conftest import assert_no_canary
from tests.support.http_stub import HttpStub

pytestmark = pytest.mark.django_db


@pytest.fixture
def scenario(project, upstream):
    shared = factories.make_connection(
        project, name="shared-billing", config={"url": upstream.url, "api_key": factories.CANARIES["shared_api_key"]}
    )
    workflow = factories.make_workflow(project)
    requirement = factories.make_requirement(workflow)
    version = factories.make_version(
        workflow,
        factories.definition(
            factories.http_node("shared", ref={"id": str(shared.id)}, url=f"{upstream.url}/shared",
                                params={"q": "{{ input.question }}"}),
            factories.http_node("mine", ref={"requirement": str(requirement.id)}, url=f"{upstream.url}/mine",
                                depends_on=("shared",)),
            output={"shared": "{{ nodes.shared.output.body.headers.Authorization }}",
                    "mine": "{{ nodes.mine.output.body.path }}"},
        ),
    )
    app = factories.make_app(project, version=version)
    factories.link_end_user(app, requirement, "user-42", {"url": upstream.url, "api_key": factories.CANARIES["user42_api_key"]})
    factories.link_end_user(app, requirement, "user-43", {"url": upstream.url, "api_key": factories.CANARIES["user43_api_key"]})
    return {"app": app, "shared": shared, "requirement": requirement, "version": version}


def run(api_client, app, key, **body):
    return api_client.post(f"/apps/{app.id}/v1/runs", body, format="json", HTTP_AUTHORIZATION=f"Bearer {key}")


def test_it_runs_each_user_against_their_own_account(api_client, scenario, owner_key, upstream):
    app = scenario["app"]
    r42 = run(api_client, app, owner_key, input={"question": "Summarize my latest invoices"}, user_id="user-42")
    r43 = run(api_client, app, owner_key, input={"question": "Summarize my latest invoices"}, user_id="user-43")
    assert r42.status_code == 200, r42.content
    assert r43.status_code == 200, r43.content
    assert r42.json()["status"] == "completed"
    seen = [(r.path, r.headers.get("Authorization")) for r in upstream.requests]
    canaries = factories.CANARIES
    assert seen == [
        ("/shared", f"Bearer {canaries['shared_api_key']}"),
        ("/mine", f"Bearer {canaries['user42_api_key']}"),
        ("/shared", f"Bearer {canaries['shared_api_key']}"),
        ("/mine", f"Bearer {canaries['user43_api_key']}"),
    ]
    assert upstream.requests[0].query == {"q": ["Summarize my latest invoices"]}
    # The upstream echoed the Authorization header: the run's output shows it masked.
    body = r42.json()
    assert body["output"] == {"shared": "********", "mine": "/mine"}
    assert_no_canary(r42.content + r43.content)


def test_it_records_credential_provenance_not_values(api_client, scenario, owner_key):
    from apps.runs.models import Run

    response = run(api_client, scenario["app"], owner_key, input={"question": "q"}, user_id="user-43")
    stored = Run.objects.get(id=response.json()["id"])
    assert stored.nodes["shared"]["connection"] == {
        "connection_id": str(scenario["shared"].id), "owner": "project", "user_id": None, "requirement_id": None,
    }
    mine = stored.nodes["mine"]["connection"]
    assert mine["owner"] == "end_user" and mine["user_id"] == "user-43"
    assert mine["requirement_id"] == str(scenario["requirement"].id)
    events = list(stored.events.values_list("type", flat=True))
    assert events[:2] == ["run.created", "run.started"] and events[-1] == "run.completed"
    assert_no_canary(str(stored.nodes) + str(list(stored.events.values_list("data", flat=True))) + str(stored.output))


@pytest.mark.parametrize("status", ["expired", "unauthorized", "incomplete"])
def test_only_active_links_count(api_client, scenario, owner_key, upstream, status):
    from apps.connect.models import EndUserLink

    app = scenario["app"]
    link = EndUserLink.objects.get(app=app, user_id="user-42")
    link.connection.status = status
    link.connection.save(update_fields=["status"])
    response = run(api_client, app, owner_key, input={"question": "q"}, user_id="user-42")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "requirements_unsatisfied"
    requirement = scenario["requirement"]
    assert error["details"]["unsatisfied"] == [{"id": str(requirement.id), "name": "billing", "title": requirement.title}]
    assert upstream.requests == []  # nothing ran
    status_response = api_client.get(f"/apps/{app.id}/v1/requirements/status", {"user_id": "user-42"},
                                     HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert status_response.json()["status"] == "incomplete"
    assert status_response.json()["unsatisfied"][0]["id"] == str(requirement.id)


def test_no_user_id_leaves_requirements_unsatisfied(api_client, scenario, owner_key, upstream):
    response = run(api_client, scenario["app"], owner_key, input={"question": "q"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "requirements_unsatisfied"
    assert upstream.requests == []


def test_status_reports_complete_for_a_linked_user(api_client, scenario, owner_key):
    response = api_client.get(f"/apps/{scenario['app'].id}/v1/requirements/status", {"user_id": "user-42"},
                              HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 200
    assert response.json() == {"status": "complete", "unsatisfied": []}


def test_status_needs_user_id(api_client, scenario, owner_key):
    response = api_client.get(f"/apps/{scenario['app'].id}/v1/requirements/status", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_editing_the_shared_connection_changes_the_next_run(api_client, scenario, owner_key, upstream):
    from apps.connections.services import connection_update_config

    app, shared = scenario["app"], scenario["shared"]
    run(api_client, app, owner_key, input={"question": "q"}, user_id="user-42")
    connection_update_config(connection=shared, config={"url": upstream.url, "api_key": "rotated-key-0123456789"},
                             actor="test")
    run(api_client, app, owner_key, input={"question": "q"}, user_id="user-42")
    shared_calls = [r.headers["Authorization"] for r in upstream.requests if r.path == "/shared"]
    assert shared_calls == [f"Bearer {factories.CANARIES['shared_api_key']}", "Bearer rotated-key-0123456789"]
    shared.refresh_from_db()
    assert shared.id == scenario["shared"].id


def test_a_401_from_the_provider_marks_the_end_user_connection_unauthorized(api_client, project, owner_key):
    from apps.connect.models import EndUserLink
    from tests.support.http_stub import StubResponse

    with HttpStub(lambda r: StubResponse(401, {"error": "bad key"})) as provider:
        workflow = factories.make_workflow(project, "w401")
        requirement = factories.make_requirement(workflow)
        version = factories.make_version(workflow, factories.definition(
            factories.http_node("mine", ref={"requirement": str(requirement.id)}, url=f"{provider.url}/x")))
        app = factories.make_app(project, name="a401", version=version)
        factories.link_end_user(app, requirement, "user-42", {"url": provider.url, "api_key": "revoked-upstream-key"})
        response = run(api_client, app, owner_key, input={"question": "q"}, user_id="user-42")
    assert response.status_code == 200
    assert response.json()["nodes"]["mine"]["status"] == "failure"
    link = EndUserLink.objects.select_related("connection").get(app=app, user_id="user-42")
    assert link.connection.status == "unauthorized"
    status_response = api_client.get(f"/apps/{app.id}/v1/requirements/status", {"user_id": "user-42"},
                                     HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert status_response.json()["status"] == "incomplete"
