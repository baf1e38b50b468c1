from __future__ import annotations

import pytest

from apps.connections.models import Connection
from apps.engine.connection_types import MASK
from tests.conftest import assert_no_canary
from tests.factories import CANARIES

pytestmark = pytest.mark.django_db


def _body(**overrides):
    return {"name": "payments", "type": "http_api_key",
            "config": {"url": "https://pay.example.com", "api_key": CANARIES["shared_api_key"]}, **overrides}


def test_it_creates_a_connection_and_masks_the_secret(owner, project):
    response = owner.post("/v1/connections", _body(), format="json")
    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert data["name"] == "payments" and data["type"] == "http_api_key" and data["status"] == "active"
    assert data["config"] == {"url": "https://pay.example.com", "api_key": MASK, "header": "Authorization",
                              "prefix": "Bearer "}
    assert data["project_id"] == str(project.id)
    assert data["owner"] == {"type": "project", "app_id": None, "user_id": None}
    assert data["created_at"].endswith("Z") and data["updated_at"].endswith("Z")
    assert_no_canary(response.content)
    # Stored for real, encrypted.
    assert Connection.objects.get(id=data["id"]).config["api_key"] == CANARIES["shared_api_key"]


def test_it_accepts_seed_aliases(owner):
    response = owner.post("/v1/connections", _body(type="dynamiq.connections.HttpApiKey"), format="json")
    assert response.status_code == 201
    assert response.json()["data"]["type"] == "http_api_key"


def test_it_validates_the_config_per_field(owner):
    response = owner.post("/v1/connections", _body(config={"url": "not a url"}), format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert set(error["details"]["config"]) >= {"url", "api_key"}


def test_it_refuses_unknown_types_and_fields(owner):
    assert owner.post("/v1/connections", _body(type="smtp"), format="json").status_code == 400
    response = owner.post("/v1/connections", _body(connections=["x"]), format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"connections": ["unknown field"]}


def test_it_refuses_a_duplicate_name(owner, world):
    response = owner.post("/v1/connections", _body(name=world.api_connection.name), format="json")
    assert response.status_code == 409


def test_it_lists_with_filters_and_pagination(owner, world):
    response = owner.get("/v1/connections", {"owner": "project", "page_size": 2, "sort": "name"})
    assert response.status_code == 200
    body = response.json()
    assert body["pagination"] == {"page": 1, "page_size": 2, "page_count": 3, "total_count": 5}
    assert [c["name"] for c in body["data"]] == ["billing-api", "crm-account"]
    end_users = owner.get("/v1/connections", {"owner": "end_user"}).json()["data"]
    assert [c["owner"] for c in end_users] == [{"type": "end_user", "app_id": str(world.app.id), "user_id": "user-42"}]
    postgres = owner.get("/v1/connections", {"type": "postgresql"}).json()["data"]
    assert [c["name"] for c in postgres] == ["warehouse"]
    assert owner.get("/v1/connections", {"status": "bogus"}).status_code == 400
    assert owner.get("/v1/connections", {"sort": "config"}).status_code == 400
    assert owner.get("/v1/connections", {"page": "0"}).status_code == 400


def test_patch_replaces_config_and_keeps_the_id(owner, world):
    connection = world.api_connection
    response = owner.patch(f"/v1/connections/{connection.id}",
                           {"config": {"url": "https://billing2.example.com", "api_key": "rotated-key-123"}}, format="json")
    assert response.status_code == 200, response.content
    data = response.json()["data"]
    assert data["id"] == str(connection.id)
    assert data["config"]["url"] == "https://billing2.example.com" and data["config"]["api_key"] == MASK
    connection.refresh_from_db()
    assert connection.config["api_key"] == "rotated-key-123"


def test_patch_with_a_masked_secret_keeps_the_stored_one(owner, world):
    connection = world.api_connection
    url = connection.config["url"]
    response = owner.patch(f"/v1/connections/{connection.id}",
                           {"config": {"url": url, "api_key": MASK, "prefix": "Token "}}, format="json")
    assert response.status_code == 200
    connection.refresh_from_db()
    assert connection.config["api_key"] == CANARIES["shared_api_key"]
    assert connection.config["prefix"] == "Token "


def test_a_stored_secret_never_follows_a_new_url(owner, world):
    """A client that may edit but never read a connection cannot point its stored key elsewhere."""
    connection = world.api_connection
    url = connection.config["url"]
    response = owner.patch(f"/v1/connections/{connection.id}",
                           {"config": {"url": "https://evil.example.com", "api_key": MASK}}, format="json")
    assert response.status_code == 400
    assert "api_key" in response.json()["error"]["details"]["config"]
    connection.refresh_from_db()
    assert connection.config["url"] == url
    moved = owner.patch(f"/v1/connections/{connection.id}",
                        {"config": {"url": "https://billing3.example.com", "api_key": "a-new-key-typed-again"}}, format="json")
    assert moved.status_code == 200


@pytest.mark.parametrize("field", ["name", "type"])
def test_patch_refuses_name_and_type(owner, world, field):
    connection = world.api_connection
    response = owner.patch(f"/v1/connections/{connection.id}", {field: "x", "config": {}}, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]
    connection.refresh_from_db()
    assert connection.name == "billing-api" and connection.type == "http_api_key"


def test_delete_while_referenced_is_409_listing_referrers(owner, world):
    response = owner.delete(f"/v1/connections/{world.api_connection.id}")
    assert response.status_code == 409
    details = response.json()["error"]["details"]
    assert details["versions"] == [{"workflow_id": str(world.workflow.id), "workflow": "invoices",
                                    "version_id": str(world.version.id), "number": 1}]
    assert details["apps"] == [{"app_id": str(world.app.id), "app": "Invoice bot"}]
    assert Connection.objects.filter(id=world.api_connection.id).exists()


def test_delete_an_unreferenced_connection(owner, world):
    response = owner.delete(f"/v1/connections/{world.pg_connection.id}")
    assert response.status_code == 204
    assert not Connection.objects.filter(id=world.pg_connection.id).exists()
    assert owner.get(f"/v1/connections/{world.pg_connection.id}").status_code == 404


def test_org_wide_key_must_name_the_project(org, project, teammate_project):
    response = org.post("/v1/connections", _body(), format="json")
    assert response.status_code == 400
    assert "project_id" in response.json()["error"]["details"]
    response = org.post("/v1/connections", _body(project_id=str(teammate_project.id)), format="json")
    assert response.status_code == 201
    assert response.json()["data"]["project_id"] == str(teammate_project.id)
    listed = org.get("/v1/connections", {"project_id": str(teammate_project.id)}).json()["data"]
    assert [c["name"] for c in listed] == ["payments"]


def test_project_key_with_another_project_id_is_404(owner, teammate_project, outsider_project):
    for other in (teammate_project, outsider_project):
        response = owner.post("/v1/connections", _body(project_id=str(other.id)), format="json")
        assert response.status_code == 404
        assert owner.get("/v1/connections", {"project_id": str(other.id)}).status_code == 404


def test_it_refuses_the_wrong_actor(world, teammate, outsider, anonymous):
    url = f"/v1/connections/{world.api_connection.id}"
    for client in (teammate, outsider):
        assert client.get(url).status_code == 404
        assert client.patch(url, {"config": {"api_key": "stolen"}}, format="json").status_code == 404
        assert client.delete(url).status_code == 404
        assert world.api_connection.id not in [c["id"] for c in client.get("/v1/connections").json()["data"]]
    response = anonymous.get(url)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_it_refuses_a_bad_key_and_a_connect_token(world, api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer dynamiq_acc_" + "x" * 64)
    assert api_client.get("/v1/connections").status_code == 401
    api_client.credentials(HTTP_AUTHORIZATION="Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2ln")
    assert api_client.get("/v1/connections").status_code == 401


def test_it_refuses_the_wrong_method(owner, world):
    assert owner.put(f"/v1/connections/{world.api_connection.id}", {}, format="json").status_code == 405
    assert owner.delete("/v1/connections").status_code == 405
    assert owner.get(f"/v1/connections/{world.api_connection.id}/oauth2/authorize").status_code == 405


def test_authorize_refuses_non_oauth_connections(owner, world):
    response = owner.post(f"/v1/connections/{world.api_connection.id}/oauth2/authorize")
    assert response.status_code == 400


def test_authorize_returns_the_provider_url_for_a_shared_oauth2_connection(owner, world):
    response = owner.post("/v1/connections", {"name": "crm-2", "type": "oauth2", "config": {
        "provider_id": str(world.provider.id), "url": "https://crm.example.com", "scopes": ["read", "write"]}},
        format="json")
    assert response.status_code == 201, response.content
    created = response.json()["data"]
    assert created["status"] == "incomplete"
    response = owner.post(f"/v1/connections/{created['id']}/oauth2/authorize")
    assert response.status_code == 200, response.content
    url = response.json()["data"]["url"]
    assert url.startswith("https://crm.example.com/authorize?")
    for part in ("client_id=platform-client", "code_challenge_method=S256", "state=", "response_type=code"):
        assert part in url
    assert_no_canary(response.content)


def test_authorize_refuses_end_user_connections(owner, world):
    response = owner.post(f"/v1/connections/{world.link.connection_id}/oauth2/authorize")
    assert response.status_code == 400


# --- SPEC §12: every http header/param/data value is write-only; credential-bearing connections fix their origin


def test_every_http_value_reads_masked_in_create_get_and_list(owner):
    team = "hc-team-key-0a1b2c3d4e5f"
    response = owner.post("/v1/connections", {"name": "honeycomb", "type": "http", "config": {
        "url": "https://api.honeycomb.example", "headers": {"X-Honeycomb-Team": team},
        "params": {"appid": "owm-appid-9f8e7d6c"}, "data": {"team": "blue-team-4711"}}}, format="json")
    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert data["config"]["headers"] == {"X-Honeycomb-Team": MASK}
    assert data["config"]["params"] == {"appid": MASK} and data["config"]["data"] == {"team": MASK}
    for answer in (owner.get(f"/v1/connections/{data['id']}"), owner.get("/v1/connections", {"page_size": 100})):
        assert answer.status_code == 200
        assert team.encode() not in answer.content and b"owm-appid" not in answer.content
    # PATCH with the masks back keeps every value.
    response = owner.patch(f"/v1/connections/{data['id']}", {"config": {
        "url": "https://api.honeycomb.example/1", "headers": {"X-Honeycomb-Team": MASK},
        "params": {"appid": MASK}, "data": {"team": MASK}}}, format="json")
    assert response.status_code == 200, response.content
    stored = Connection.objects.get(id=data["id"]).config
    assert stored["headers"] == {"X-Honeycomb-Team": team} and stored["params"] == {"appid": "owm-appid-9f8e7d6c"}


@pytest.mark.parametrize("type_, config", [
    ("http", {"headers": {"X-Honeycomb-Team": "hc-team-key-0a1b2c3d"}}),
    ("http_api_key", {"api_key": "k-0123456789"}),
    ("oauth2", {}),
])
def test_a_credential_bearing_connection_without_url_is_400(owner, world, type_, config):
    if type_ == "oauth2":
        config = {**config, "provider_id": str(world.provider.id)}
    response = owner.post("/v1/connections", {"name": "unpinned", "type": type_, "config": config}, format="json")
    assert response.status_code == 400, response.content
    assert "url" in response.json()["error"]["details"]["config"]


@pytest.mark.parametrize("url", ["https://{tenant}.pay.example.com/", "https://pay.example.com:{port}/",
                                 "https://{{ input.host }}/", "https://user:pw@pay.example.com/"])
def test_a_placeholder_or_userinfo_in_the_url_origin_is_400_on_create_and_patch(owner, world, url):
    response = owner.post("/v1/connections", _body(config={"url": url, "api_key": "k-0123456789"}), format="json")
    assert response.status_code == 400
    assert "url" in response.json()["error"]["details"]["config"]
    response = owner.patch(f"/v1/connections/{world.api_connection.id}", {"config": {"url": url}}, format="json")
    assert response.status_code == 400
    assert Connection.objects.get(id=world.api_connection.id).config["url"] != url
