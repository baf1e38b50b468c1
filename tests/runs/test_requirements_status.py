"""`GET /v1/requirements/status` on the App host: the answer in full, whose links count, and its SQL budget
(SPEC.md section 11: p95 <= 5 ms at 1,000,000 links, measured by bench/status_scale.py)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.connections.models import Connection
from apps.workflows.services import requirement_create
from tests import factories

pytestmark = pytest.mark.django_db

# At most: App lookup, access key, requirement status; whatever the number of requirements and links.
MAX_STATEMENTS_PER_STATUS_REQUEST = 3
LINKED = {"url": "https://api.example.com", "api_key": "user-key-0123456789"}


def build_app(project, *, name: str, requirements: int):
    """An App whose deployed version has `requirements` requirements, one HTTP node each."""
    workflow = factories.make_workflow(project, name)
    made = [
        requirement_create(workflow=workflow, name=f"r{i:02d}", title=f"Account {i:02d}",
                           spec={"connection_type": "http_api_key"})
        for i in range(requirements)
    ]
    nodes, previous = [], "input"
    for i, requirement in enumerate(made):
        nodes.append(factories.http_node(f"n{i}", ref={"requirement": str(requirement.id)},
                                         url=f"https://api.example.com/{i}", depends_on=(previous,)))
        previous = f"n{i}"
    version = factories.make_version(workflow, factories.definition(*nodes))
    return factories.make_app(project, name=name, version=version), made


def status(client, app, key, user_id):
    response = client.get(f"/apps/{app.id}/v1/requirements/status", {"user_id": user_id},
                          HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200, response.content
    return response


class TestAnswer:
    def test_it_lists_each_unsatisfied_requirement_in_full_ordered_by_title(self, client, project, owner_key):
        workflow = factories.make_workflow(project, "crm-sync")
        zeta = requirement_create(workflow=workflow, name="a-zeta", title="Zeta CRM", description="The CRM.",
                                  spec={"connection_type": "http_api_key"})
        alpha = requirement_create(workflow=workflow, name="b-alpha", title="Alpha billing",
                                   spec={"connection_type": "http"})
        linked = requirement_create(workflow=workflow, name="c-mail", title="Mail", spec={"connection_type": "http_api_key"})
        expired = requirement_create(workflow=workflow, name="d-files", title="Files", spec={"connection_type": "http_api_key"})
        nodes = [factories.http_node(f"n{i}", ref={"requirement": str(r.id)}, url="https://api.example.com/")
                 for i, r in enumerate((zeta, alpha, linked, expired))]
        app = factories.make_app(project, name="CRM", version=factories.make_version(workflow, factories.definition(*nodes)))
        factories.link_end_user(app, linked, "alice", LINKED)
        factories.link_end_user(app, expired, "alice", LINKED, status=Connection.Status.EXPIRED)

        answer = status(client, app, owner_key, "alice").json()

        def shown(r, spec):
            return {"id": str(r.id), "type": "connection", "name": r.name,
                    "form": {"title": r.title, "description": r.description}, "spec": spec,
                    "workflow_id": str(workflow.id)}

        assert answer == {"status": "incomplete", "unsatisfied": [
            shown(alpha, {"connection_type": "http"}),
            shown(expired, {"connection_type": "http_api_key"}),
            shown(zeta, {"connection_type": "http_api_key"}),
        ]}
        assert list(answer) == ["status", "unsatisfied"]
        assert list(answer["unsatisfied"][0]) == ["id", "type", "name", "form", "spec", "workflow_id"]

    def test_a_user_with_every_requirement_linked_and_active_is_complete(self, client, project, owner_key):
        app, requirements = build_app(project, name="full", requirements=3)
        for requirement in requirements:
            factories.link_end_user(app, requirement, "alice", LINKED)
        assert status(client, app, owner_key, "alice").json() == {"status": "complete", "unsatisfied": []}

    def test_only_this_users_links_on_this_app_count(self, client, project, owner_key):
        app, (requirement,) = build_app(project, name="mine", requirements=1)
        other_app = factories.make_app(project, name="other", version=app.current_deployment.workflow_version)
        factories.link_end_user(app, requirement, "bob", LINKED)
        factories.link_end_user(other_app, requirement, "alice", LINKED)
        answer = status(client, app, owner_key, "alice").json()
        assert [item["id"] for item in answer["unsatisfied"]] == [str(requirement.id)]
        assert status(client, app, owner_key, "bob").json()["status"] == "complete"

    def test_a_user_id_with_sql_in_it_is_only_a_value(self, client, project, owner_key):
        app, (requirement,) = build_app(project, name="quoted", requirements=1)
        factories.link_end_user(app, requirement, "o'hara", LINKED)
        assert status(client, app, owner_key, "o'hara").json()["status"] == "complete"
        assert status(client, app, owner_key, "x' OR '1'='1").json()["status"] == "incomplete"

    def test_an_app_without_a_deployment_is_complete(self, client, project, owner_key):
        app = factories.make_app(project, name="bare")
        assert status(client, app, owner_key, "alice").json() == {"status": "complete", "unsatisfied": []}


def statements_for_one_status(client, app, key) -> int:
    status(client, app, key, "alice")  # warm: the key's last_used_at write happens at most once a minute
    with CaptureQueriesContext(connection) as captured:
        status(client, app, key, "alice")
    return len(captured.captured_queries)


def test_statement_count_is_the_same_for_1_and_12_requirements(client, project, owner_key):
    small, small_requirements = build_app(project, name="small", requirements=1)
    large, large_requirements = build_app(project, name="large", requirements=12)
    for requirement in large_requirements[::2]:
        factories.link_end_user(large, requirement, "alice", LINKED)
    small_count = statements_for_one_status(client, small, owner_key)
    assert statements_for_one_status(client, large, owner_key) == small_count
    assert small_count <= MAX_STATEMENTS_PER_STATUS_REQUEST
