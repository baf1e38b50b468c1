"""SQL queries per run are constant in the number of nodes and connections (SPEC.md section 11)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests import factories

pytestmark = pytest.mark.django_db
MAX_QUERIES_PER_RUN = 12


def build_app(project, upstream, *, nodes: int, name: str):
    """`nodes` HTTP nodes alternating between distinct shared connections and distinct requirements."""
    workflow = factories.make_workflow(project, name)
    http_nodes, requirements = [], []
    previous = "input"
    for index in range(nodes):
        if index % 2 == 0:
            conn = factories.make_connection(project, name=f"{name}-c{index}",
                                             config={"url": upstream.url, "api_key": f"shared-key-{name}-{index}"})
            ref = {"id": str(conn.id)}
        else:
            requirement = factories.make_requirement(workflow, name=f"r{index}", title=f"R{index}")
            requirements.append(requirement)
            ref = {"requirement": str(requirement.id)}
        http_nodes.append(factories.http_node(f"n{index}", ref=ref, url=f"{upstream.url}/{index}", depends_on=(previous,)))
        previous = f"n{index}"
    app = factories.make_app(project, name=name, version=factories.make_version(workflow, factories.definition(*http_nodes)))
    for requirement in requirements:
        factories.link_end_user(app, requirement, "user-42", {"url": upstream.url, "api_key": f"user-key-{requirement.name}"})
    return app


def queries_for_one_run(client, app, key) -> int:
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    # Warm-up: the key's last_used_at write happens at most once a minute, not per run.
    client.post(f"/apps/{app.id}/v1/runs", {"input": {"question": "q"}, "user_id": "user-42"},
                content_type="application/json", **auth)
    with CaptureQueriesContext(connection) as captured:
        response = client.post(f"/apps/{app.id}/v1/runs", {"input": {"question": "q"}, "user_id": "user-42"},
                               content_type="application/json", **auth)
    assert response.status_code == 200 and response.json()["status"] == "completed", response.content
    return len(captured.captured_queries)


def test_query_count_is_the_same_at_2_and_20_nodes(client, project, owner_key, upstream):
    small = queries_for_one_run(client, build_app(project, upstream, nodes=2, name="small"), owner_key)
    large = queries_for_one_run(client, build_app(project, upstream, nodes=20, name="large"), owner_key)
    assert small == large
    assert small <= MAX_QUERIES_PER_RUN
    print(f"\nqueries per sync run (2 and 20 nodes): {small}")
