"""Every read path of a connection, scanned for the canary secrets: none may ever come back."""

from __future__ import annotations

import pytest

from apps.engine.connection_types import MASK
from tests.conftest import assert_no_canary
from tests.factories import CANARIES

pytestmark = pytest.mark.django_db


def test_no_read_path_returns_a_secret(owner, org, world):
    connections = [world.api_connection, world.http_connection, world.openai_connection, world.pg_connection,
                   world.oauth_connection, world.link.connection]
    answers = []
    for client in (owner, org):
        answers.append(client.get("/v1/connections", {"page_size": 100}))
        for connection in connections:
            answers.append(client.get(f"/v1/connections/{connection.id}"))
        answers += [
            client.get("/v1/oauth2/providers"), client.get(f"/v1/oauth2/providers/{world.provider.id}"),
            client.get(f"/v1/workflows/{world.workflow.id}/versions"),
            client.get(f"/v1/workflows/{world.workflow.id}/versions/{world.version.id}"),
            client.get("/v1/apps"), client.get(f"/v1/apps/{world.app.id}"),
            client.get(f"/v1/apps/{world.app.id}/deployments"), client.get(f"/v1/apps/{world.app.id}/links"),
        ]
    # Write answers echo the object too: create, patch (with and without a new secret), provider patch.
    answers.append(owner.post("/v1/connections", {"name": "fresh", "type": "postgresql", "config": {
        "host": "db", "database": "d", "user": "u", "password": CANARIES["pg_password"]}}, format="json"))
    answers.append(owner.post("/v1/connections", {"name": "fresh-http", "type": "http", "config": {
        "url": "https://x.example.com", "headers": {"Authorization": CANARIES["header_secret"]},
        "params": {"api_key": CANARIES["shared_api_key"]}}}, format="json"))
    answers.append(owner.patch(f"/v1/connections/{world.openai_connection.id}",
                               {"config": {"api_key": CANARIES["openai_key"], "organization": "org-1"}}, format="json"))
    answers.append(owner.patch(f"/v1/connections/{world.http_connection.id}",
                               {"config": {"url": "https://h2.example.com", "headers": {"X-Api-Key": MASK}}},
                               format="json"))
    answers.append(owner.patch(f"/v1/connections/{world.oauth_connection.id}",
                               {"config": {"url": "https://crm2.example.com"}}, format="json"))
    answers.append(owner.patch(f"/v1/oauth2/providers/{world.provider.id}",
                               {"client_secret": CANARIES["client_secret"]}, format="json"))
    # Errors must not quote secrets either (a 409 on a duplicate name, a 400 on a bad config).
    answers.append(owner.post("/v1/connections", {"name": "billing-api", "type": "http_api_key", "config": {
        "url": "https://x.example.com", "api_key": CANARIES["shared_api_key"]}}, format="json"))
    answers.append(owner.post("/v1/connections", {"name": "bad", "type": "http_api_key", "config": {
        "url": 5, "api_key": CANARIES["shared_api_key"]}}, format="json"))

    assert len(answers) == 38
    for response in answers:
        assert response.status_code < 500, response.content
        assert_no_canary(response.content)
    # And the masks are there, so the scan had something to look at.
    body = owner.get(f"/v1/connections/{world.oauth_connection.id}").json()["data"]["config"]
    assert body["access_token"] == MASK and body["refresh_token"] == MASK
    http = owner.get(f"/v1/connections/{world.http_connection.id}").json()["data"]["config"]
    assert http["headers"]["X-Api-Key"] == MASK
    world.http_connection.refresh_from_db()
    assert world.http_connection.config["headers"]["X-Api-Key"] == CANARIES["header_secret"]
