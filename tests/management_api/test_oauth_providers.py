from __future__ import annotations

import pytest

from apps.connections.models import OAuthProvider
from apps.engine.connection_types import MASK
from tests.conftest import assert_no_canary
from tests.factories import CANARIES

pytestmark = pytest.mark.django_db

BODY = {"name": "github", "authorize_url": "https://github.example.com/login/oauth/authorize",
        "token_url": "https://github.example.com/login/oauth/access_token", "client_id": "abc",
        "client_secret": CANARIES["client_secret"], "scopes": ["repo"]}


def test_it_creates_a_provider_with_a_write_only_secret(owner, project):
    response = owner.post("/v1/oauth2/providers", BODY, format="json")
    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert data["client_secret"] == MASK and data["pkce"] is True and data["scopes"] == ["repo"]
    assert data["project_id"] == str(project.id)
    assert_no_canary(response.content)
    assert OAuthProvider.objects.get(id=data["id"]).client_secret == CANARIES["client_secret"]
    listed = owner.get("/v1/oauth2/providers")
    assert listed.json()["pagination"]["total_count"] == 1
    assert_no_canary(listed.content)
    assert_no_canary(owner.get(f"/v1/oauth2/providers/{data['id']}").content)


def test_it_validates(owner):
    response = owner.post("/v1/oauth2/providers", {**BODY, "token_url": "ftp://x"}, format="json")
    assert response.status_code == 400
    assert "token_url" in response.json()["error"]["details"]


def test_patch_keeps_a_blank_secret_and_refuses_duplicates(owner, world):
    provider = world.provider
    response = owner.patch(f"/v1/oauth2/providers/{provider.id}", {"client_secret": "", "scopes": ["a", "b"]},
                           format="json")
    assert response.status_code == 200
    assert response.json()["data"]["scopes"] == ["a", "b"]
    assert_no_canary(response.content)
    provider.refresh_from_db()
    assert provider.client_secret == CANARIES["client_secret"]
    owner.post("/v1/oauth2/providers", BODY, format="json")
    assert owner.patch(f"/v1/oauth2/providers/{provider.id}", {"name": "github"}, format="json").status_code == 409
    assert owner.patch(f"/v1/oauth2/providers/{provider.id}", {"project_id": "x"}, format="json").status_code == 400


def test_it_refuses_the_wrong_actor_and_method(world, teammate, outsider, anonymous, owner):
    url = f"/v1/oauth2/providers/{world.provider.id}"
    for client in (teammate, outsider):
        assert client.get(url).status_code == 404
        assert client.patch(url, {"client_id": "x"}, format="json").status_code == 404
    assert anonymous.get("/v1/oauth2/providers").status_code == 401
    assert owner.delete(url).status_code == 405


def test_it_stores_and_shows_a_userinfo_url(owner):
    response = owner.post("/v1/oauth2/providers", {**BODY, "userinfo_url": "https://github.example.com/user"},
                          format="json")
    assert response.status_code == 201, response.content
    assert response.json()["data"]["userinfo_url"] == "https://github.example.com/user"


def test_moving_the_userinfo_url_needs_the_client_secret_again(owner, world):
    # Every new access token is sent there: whoever cannot read the client secret cannot redirect the tokens.
    url = f"/v1/oauth2/providers/{world.provider.id}"
    refused = owner.patch(url, {"userinfo_url": "https://attacker.example/collect"}, format="json")
    assert refused.status_code == 400
    assert "client_secret" in refused.json()["error"]["details"]
    accepted = owner.patch(url, {"userinfo_url": "https://attacker.example/collect",
                                 "client_secret": CANARIES["client_secret"]}, format="json")
    assert accepted.status_code == 200
