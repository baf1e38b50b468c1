"""`POST /v1/mcp/sessions` (App host, access key) and `mcp_enabled` in the management API."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from apps.mcp import tokens
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def app(project):
    return factories.make_app(project, name="Invoice bot", mcp_enabled=True)


def _mint(api_client, app, body, key=None, **kwargs):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return api_client.post(f"/apps/{app.id}/v1/mcp/sessions", body, format="json", **auth, **kwargs)


def test_it_mints_a_token_for_the_app_and_user(api_client, app, owner_key):
    response = _mint(api_client, app, {"user_id": "user-42", "ttl_seconds": 900}, owner_key)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["url"] == f"http://testserver/apps/{app.id}/mcp"
    assert response["Cache-Control"] == "no-store"
    claims = tokens.decode(body["token"], app_id=str(app.id))
    assert claims.user_id == "user-42"
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert expires <= timezone.now() + timedelta(seconds=901)


def test_the_url_is_on_the_app_host_when_minted_there(api_client, app, owner_key):
    response = api_client.post("/v1/mcp/sessions", {"user_id": "u"}, format="json", HTTP_HOST=app.hostname,
                               HTTP_AUTHORIZATION=f"Bearer {owner_key}")

    assert response.json()["url"] == f"http://{app.hostname}/mcp"


def test_it_defaults_to_at_most_an_hour(api_client, app, owner_key, settings):
    settings.MCP_SESSION_TTL_SECONDS = 3600
    body = _mint(api_client, app, {"user_id": "user-42"}, owner_key).json()

    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert expires <= timezone.now() + timedelta(hours=1, seconds=1)


@pytest.mark.parametrize("body", [{}, {"user_id": ""}, {"user_id": 42}, {"user_id": "u", "ttl_seconds": 3601},
                                  {"user_id": "u", "ttl_seconds": 10}, {"user_id": "u", "scope": "all"}, ["user_id"]])
def test_it_validates(api_client, app, owner_key, body):
    response = _mint(api_client, app, body, owner_key)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "bad_request"


def test_it_needs_an_access_key(api_client, app):
    assert _mint(api_client, app, {"user_id": "u"}).status_code == 401


def test_an_mcp_token_cannot_mint_another(api_client, app, owner_key):
    token = _mint(api_client, app, {"user_id": "u"}, owner_key).json()["token"]

    assert _mint(api_client, app, {"user_id": "other"}, token).status_code == 401


def test_mcp_enabled_is_set_and_shown_by_the_management_api(api_client, project, owner_key):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {owner_key}"}
    created = api_client.post("/v1/apps", {"name": "Agents' bot", "mcp_enabled": True}, format="json", **auth)
    assert created.status_code == 201, created.content
    assert created.json()["data"]["mcp_enabled"] is True

    patched = api_client.patch(f"/v1/apps/{created.json()['data']['id']}", {"mcp_enabled": False}, format="json", **auth)

    assert patched.json()["data"]["mcp_enabled"] is False
