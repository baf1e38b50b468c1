"""The seed's scenario, built and deployed with the management API alone, then run on the App host."""

from __future__ import annotations

import pytest

from tests.conftest import assert_no_canary
from tests.factories import CANARIES
from tests.management_api.conftest import client_for

pytestmark = pytest.mark.django_db


def test_a_client_builds_deploys_and_runs_the_seed_scenario(owner, upstream, owner_key):
    def created(response):
        assert response.status_code == 201, response.content
        assert_no_canary(response.content)
        return response.json()["data"]

    # A shared connection every caller uses, and a requirement each end user fills with their own.
    shared = created(owner.post("/v1/connections", {
        "name": "summaries", "type": "http_api_key",
        "config": {"url": upstream.url, "api_key": CANARIES["shared_api_key"]},
    }, format="json"))
    workflow = created(owner.post("/v1/workflows", {"name": "invoices", "description": "Seed scenario"}, format="json"))
    requirement = created(owner.post(f"/v1/workflows/{workflow['id']}/requirements", {
        "name": "billing", "title": "Your billing account", "spec": {"connection_type": "http_api_key"},
    }, format="json"))
    definition = {"nodes": [
        {"id": "input", "type": "input", "fields": {"question": {"type": "string", "required": True}}},
        {"id": "invoices", "type": "http", "depends_on": ["input"],
         "connection": {"requirement": requirement["id"]},
         "config": {"method": "GET", "url": f"{upstream.url}/invoices", "params": {"q": "{{ input.question }}"}}},
        {"id": "summary", "type": "http", "depends_on": ["invoices"], "connection": {"id": shared["id"]},
         "config": {"method": "POST", "url": f"{upstream.url}/summarize",
                    "data": {"invoices": "{{ nodes.invoices.output.body.path }}"}}},
        {"id": "output", "type": "output", "depends_on": ["summary"],
         "fields": {"output": "{{ nodes.summary.output.body.body }}"}},
    ]}
    version = created(owner.post(f"/v1/workflows/{workflow['id']}/versions",
                                 {"definition": definition, "description": "first"}, format="json"))
    assert version["number"] == 1 and version["requirement_ids"] == [requirement["id"]]
    app = created(owner.post("/v1/apps", {"name": "Invoice bot"}, format="json"))
    deployment = created(owner.post(f"/v1/apps/{app['id']}/deployments",
                                    {"workflow_version_id": version["id"]}, format="json"))
    assert deployment["version_number"] == 1
    assert owner.get(f"/v1/apps/{app['id']}").json()["data"]["workflow_version_id"] == version["id"]

    # The App host: user-42 links their billing account through the connect API, then runs.
    app_client = client_for(owner_key)
    base = f"/apps/{app['id']}"
    status = app_client.get(f"{base}/v1/requirements/status", {"user_id": "user-42"})
    assert status.status_code == 200 and status.json()["status"] == "incomplete"
    token = app_client.post(f"{base}/v1/connect/tokens", {"user_id": "user-42"}, format="json")
    assert token.status_code == 201, token.content
    end_user = client_for(token.json()["token"])
    linked = end_user.post(f"/v1/connect/requirements/{requirement['id']}/credentials", {
        "type": "http_api_key", "config": {"url": upstream.url, "api_key": CANARIES["user42_api_key"]},
    }, format="json")
    assert linked.status_code == 201, linked.content

    run = app_client.post(f"{base}/v1/runs", {"input": {"question": "latest"}, "user_id": "user-42"}, format="json")
    assert run.status_code == 200, run.content
    assert run.json()["status"] == "completed"
    assert run.json()["output"] == {"output": {"invoices": "/invoices"}}
    assert_no_canary(run.content)
    invoices_call, summary_call = upstream.requests
    assert invoices_call.headers["Authorization"] == f"Bearer {CANARIES['user42_api_key']}"
    assert invoices_call.query == {"q": ["latest"]}
    assert summary_call.headers["Authorization"] == f"Bearer {CANARIES['shared_api_key']}"

    # The management API sees the link, never its secret.
    links = owner.get(f"/v1/apps/{app['id']}/links", {"user_id": "user-42"})
    assert [(x["requirement_id"], x["status"]) for x in links.json()["data"]] == [(requirement["id"], "active")]
    assert_no_canary(links.content)
