"""`/metrics` is an operator endpoint of the platform host (SPEC §15): never on an App host, not even with the
metrics token, and nothing of a tenant in it (no secret, no App ID, no end-user ID: labels are URL patterns,
modes, types and outcomes). The session-wide canary scan reads every scrape below as well."""

from __future__ import annotations

import secrets

import pytest
from django.test import Client

from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = token = secrets.token_urlsafe(32)
    return token


@pytest.fixture
def app_with_a_secret(project, upstream):
    shared = factories.make_connection(
        project, name="metrics-shared", config={"url": upstream.url, "api_key": factories.CANARIES["shared_api_key"]}
    )
    workflow = factories.make_workflow(project, "metrics")
    version = factories.make_version(workflow, factories.definition(
        factories.http_node("call", ref={"id": str(shared.id)}, url=f"{upstream.url}/call")))
    return factories.make_app(project, name="Metrics bot", version=version)


def test_app_hosts_have_no_metrics_even_with_the_token(app_with_a_secret, metrics_token):
    client = Client(REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")
    for path, host in (("/metrics", app_with_a_secret.hostname), (f"/apps/{app_with_a_secret.id}/metrics", "testserver")):
        response = client.get(path, HTTP_HOST=host)
        assert response.status_code == 404, (path, host)
        assert response.json()["error"]["code"] == "not_found"
    assert client.get("/metrics", HTTP_HOST="unknown.example.com").status_code == 400


def test_a_scrape_after_runs_names_no_tenant_and_no_secret(app_with_a_secret, owner_key, metrics_token):
    runs = Client(HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    for user_id in ("alice@example.com", "bob@example.com"):
        response = runs.post(f"/apps/{app_with_a_secret.id}/v1/runs", {"input": {"question": "q"}, "user_id": user_id},
                             content_type="application/json")
        assert response.status_code == 200, response.content
    run_id = response.json()["id"]
    scrape = Client(HTTP_AUTHORIZATION=f"Bearer {metrics_token}").get("/metrics")
    assert scrape.status_code == 200
    body = scrape.content.decode()
    assert 'rcp_http_requests_total{route="app:/v1/runs",status="200"}' in body
    for private in (str(app_with_a_secret.id), app_with_a_secret.hostname, run_id, "alice@example.com", owner_key,
                    factories.CANARIES["shared_api_key"], metrics_token):
        assert private not in body
