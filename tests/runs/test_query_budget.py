"""SQL statements per sync run are constant in the number of nodes and connections, and at most 5 on a warm
worker, BEGIN/COMMIT not counted (SPEC.md section 11)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests import factories

pytestmark = pytest.mark.django_db
MAX_STATEMENTS_PER_RUN = 5
# Transaction control is not a statement of the run's own (SPEC.md section 11 counts without it).
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


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
    return len([q for q in captured.captured_queries if not q["sql"].lstrip().upper().startswith(TRANSACTION_CONTROL)])


def test_statement_count_is_the_same_at_2_20_and_200_nodes(client, project, owner_key, upstream):
    counts = {
        nodes: queries_for_one_run(client, build_app(project, upstream, nodes=nodes, name=f"n{nodes}"), owner_key)
        for nodes in (2, 20, 200)
    }
    assert len(set(counts.values())) == 1, counts
    assert counts[2] <= MAX_STATEMENTS_PER_RUN, counts
    print(f"\nstatements per sync run (2, 20 and 200 nodes): {counts}")
