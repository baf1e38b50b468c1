"""`POST /v1/connect/tokens` on the App host, and the token format itself."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from apps.connect import tokens
from apps.deployments.models import App
from tests.connect.conftest import CLIENT_APP_ORIGIN, build_connect_setup

pytestmark = pytest.mark.django_db


def _mint(client, app, body, key=None, host=None):
    headers = {"HTTP_HOST": host or app.hostname}
    if key:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client.post("/v1/connect/tokens", body, format="json", **headers)


def test_it_mints_a_token_for_one_user(api_client, setup, owner_key, settings):
    response = _mint(api_client, setup.app, {"user_id": "user-42", "redirect_url": f"{CLIENT_APP_ORIGIN}/done?x=1"}, owner_key)
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"token", "url", "expires_at"}
    assert response["Cache-Control"] == "no-store"
    assert body["url"].startswith(settings.PLATFORM_URL + "/connect?token=")
    assert parse_qs(urlsplit(body["url"]).query)["token"] == [body["token"]]
    claims = tokens.decode(body["token"])
    assert claims.app_id == str(setup.app.id)
    assert claims.user_id == "user-42"
    assert claims.redirect_url == f"{CLIENT_APP_ORIGIN}/done?x=1"
    # Changed deliberately (SPEC §12): links live 30 minutes by default (this asserted 24 hours).
    assert abs(claims.expires_at.timestamp() - (time.time() + 30 * 60)) < 5
    assert body["expires_at"].startswith(claims.expires_at.strftime("%Y-%m-%dT%H:%M:%S"))


def test_it_works_on_the_app_path_of_the_platform_host(api_client, setup, owner_key):
    response = api_client.post(f"/apps/{setup.app.id}/v1/connect/tokens", {"user_id": "u"}, format="json",
                               HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 201


def test_each_token_is_distinct(api_client, setup, owner_key):
    first = _mint(api_client, setup.app, {"user_id": "user-42"}, owner_key).json()["token"]
    second = _mint(api_client, setup.app, {"user_id": "user-42"}, owner_key).json()["token"]
    assert tokens.decode(first).jti != tokens.decode(second).jti


def test_an_org_wide_key_may_mint(api_client, setup, org_key):
    assert _mint(api_client, setup.app, {"user_id": "user-42"}, org_key).status_code == 201


def test_a_private_app_needs_an_access_key(api_client, setup):
    response = _mint(api_client, setup.app, {"user_id": "user-42"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_a_key_of_another_project_is_forbidden(api_client, setup, teammate_key, outsider_key):
    assert _mint(api_client, setup.app, {"user_id": "user-42"}, teammate_key).status_code == 403
    assert _mint(api_client, setup.app, {"user_id": "user-42"}, outsider_key).status_code == 403


def test_a_public_app_still_needs_a_key_to_mint(api_client, teammate_project, teammate_key):
    """A connect token acts as one end user: minting one without a key would let anyone link (or unlink)
    credentials as any user of a public App."""
    s = build_connect_setup(teammate_project, app_name="Public bot", access_type=App.AccessType.PUBLIC)
    assert _mint(api_client, s.app, {"user_id": "user-42"}).status_code == 401
    assert _mint(api_client, s.app, {"user_id": "user-42"}, teammate_key).status_code == 201


def test_a_connect_token_cannot_mint_tokens(api_client, setup, owner_key):
    token = _mint(api_client, setup.app, {"user_id": "user-42"}, owner_key).json()["token"]
    response = _mint(api_client, setup.app, {"user_id": "user-43"}, token)
    assert response.status_code == 401


@pytest.mark.parametrize("redirect_url", [
    "https://evil.example.com/done",
    "http://client.example.com/done",  # scheme differs
    "https://client.example.com:8443/done",  # port differs
    "https://client.example.com.evil.test/",
    "javascript:alert(1)",
    "/relative",
    "https://user@evil.example.com",
])
def test_redirect_url_must_be_on_an_allowed_origin(api_client, setup, owner_key, redirect_url):
    response = _mint(api_client, setup.app, {"user_id": "user-42", "redirect_url": redirect_url}, owner_key)
    assert response.status_code == 400
    assert "redirect_url" in response.json()["error"]["details"]


def test_default_ports_compare_equal(api_client, setup, owner_key):
    response = _mint(api_client, setup.app, {"user_id": "u", "redirect_url": "https://CLIENT.example.com:443/x"}, owner_key)
    assert response.status_code == 201


@pytest.mark.parametrize("body,field", [
    ({}, "user_id"),
    ({"user_id": ""}, "user_id"),
    ({"user_id": "x" * 256}, "user_id"),
    ({"user_id": 42}, "user_id"),
    ({"user_id": "u", "scopes": ["all"]}, "scopes"),
    ({"user_id": "u", "app_id": "other"}, "app_id"),
])
def test_it_validates_the_body(api_client, setup, owner_key, body, field):
    response = _mint(api_client, setup.app, body, owner_key)
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_unknown_fields_are_named_in_the_message(api_client, setup, owner_key):
    response = _mint(api_client, setup.app, {"user_id": "u", "connections": {}}, owner_key)
    assert "connections" in response.json()["error"]["message"]


def test_user_id_of_255_characters_is_accepted(api_client, setup, owner_key):
    assert _mint(api_client, setup.app, {"user_id": "x" * 255}, owner_key).status_code == 201


def test_it_refuses_the_wrong_method(api_client, setup, owner_key):
    response = api_client.get("/v1/connect/tokens", HTTP_HOST=setup.app.hostname, HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 405


def test_minting_is_not_served_on_the_platform_host(api_client, setup, owner_key):
    response = api_client.post("/v1/connect/tokens", {"user_id": "u"}, format="json", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


class TestTokenFormat:
    def test_it_round_trips(self, setup):
        token, claims = tokens.mint(app_id=str(setup.app.id), user_id="user-42")
        assert tokens.decode(token) == claims

    def test_an_expired_token_is_refused_as_expired(self, setup, settings):
        settings.CONNECT_TOKEN_TTL_SECONDS = -1
        token, _ = tokens.mint(app_id=str(setup.app.id), user_id="user-42")
        with pytest.raises(tokens.InvalidConnectToken) as exc:
            tokens.decode(token)
        assert exc.value.expired

    def test_a_token_signed_with_another_key_is_refused(self, setup):
        forged = jwt.encode({"aud": "connect", "exp": int(time.time()) + 60, "jti": "j", "app_id": str(setup.app.id),
                             "user_id": "u"}, "not-the-key-but-long-enough-for-hs256-0123456789", algorithm="HS256")
        with pytest.raises(tokens.InvalidConnectToken):
            tokens.decode(forged)

    def test_a_token_for_another_audience_is_refused(self, setup):
        payload = {"aud": "other", "exp": int(time.time()) + 60, "jti": "j", "app_id": str(setup.app.id), "user_id": "u"}
        with pytest.raises(tokens.InvalidConnectToken):
            tokens.decode(jwt.encode(payload, tokens._key(), algorithm="HS256"))

    def test_an_unsigned_token_is_refused(self, setup):
        payload = {"aud": "connect", "exp": int(time.time()) + 60, "jti": "j", "app_id": str(setup.app.id), "user_id": "u"}
        with pytest.raises(tokens.InvalidConnectToken):
            tokens.decode(jwt.encode(payload, None, algorithm="none"))

    def test_the_key_is_not_the_secret_key_itself(self, setup, settings):
        payload = {"aud": "connect", "exp": int(time.time()) + 60, "jti": "j", "app_id": str(setup.app.id), "user_id": "u"}
        with pytest.raises(tokens.InvalidConnectToken):
            tokens.decode(jwt.encode(payload, settings.SECRET_KEY, algorithm="HS256"))

    @pytest.mark.parametrize("missing", ["exp", "jti", "app_id", "user_id", "aud"])
    def test_required_claims(self, setup, missing):
        payload = {"aud": "connect", "exp": int(time.time()) + 60, "jti": "j", "app_id": str(setup.app.id), "user_id": "u"}
        del payload[missing]
        with pytest.raises(tokens.InvalidConnectToken):
            tokens.decode(jwt.encode(payload, tokens._key(), algorithm="HS256"))


@pytest.mark.parametrize("redirect_url", [
    "https://evil.example\\@client.example.com/done",  # a browser reads the backslash as a slash: evil.example
    "https://user@client.example.com/done",
    "https://client.example.com\t/done",
    " https://client.example.com/done",
])
def test_ambiguous_redirect_urls_are_refused(api_client, setup, owner_key, redirect_url):
    """Found in review: urlsplit and browsers disagree on backslashes, which made an open redirect."""
    response = _mint(api_client, setup.app, {"user_id": "user-42", "redirect_url": redirect_url}, owner_key)
    assert response.status_code == 400


class TestLifetime:
    """SPEC §12: connect tokens default to 30 minutes, configurable up to 24 hours."""

    def test_the_default_is_30_minutes(self, settings):
        from config import settings as product_settings

        assert product_settings.CONNECT_TOKEN_TTL_SECONDS == tokens.DEFAULT_TTL_SECONDS == 30 * 60
        assert settings.CONNECT_TOKEN_TTL_SECONDS == 30 * 60

    def test_a_longer_setting_is_honoured_up_to_24_hours(self, setup, settings):
        settings.CONNECT_TOKEN_TTL_SECONDS = 24 * 3600
        _, claims = tokens.mint(app_id=str(setup.app.id), user_id="u")
        assert abs(claims.expires_at.timestamp() - (time.time() + 24 * 3600)) < 5

    def test_a_value_over_24_hours_set_at_run_time_is_capped(self, setup, settings):
        settings.CONNECT_TOKEN_TTL_SECONDS = 30 * 24 * 3600
        token, claims = tokens.mint(app_id=str(setup.app.id), user_id="u")
        assert claims.expires_at.timestamp() <= time.time() + tokens.MAX_TTL_SECONDS + 1
        assert tokens.decode(token).expires_at == claims.expires_at

    @pytest.mark.parametrize("value", ["86401", "604800", "0", "-5"])
    def test_the_process_refuses_to_start_outside_1_second_to_24_hours(self, value):
        import sys

        from tests.core.test_settings import SETUP, _env, _run

        result = _run([sys.executable, "-c", SETUP], _env(CONNECT_TOKEN_TTL_SECONDS=value))
        assert result.returncode != 0
        assert "ImproperlyConfigured" in result.stderr and "CONNECT_TOKEN_TTL_SECONDS" in result.stderr

    def test_the_process_starts_with_24_hours(self):
        import sys

        from tests.core.test_settings import _env, _run

        code = "import django; django.setup(); from django.conf import settings; print(settings.CONNECT_TOKEN_TTL_SECONDS)"
        result = _run([sys.executable, "-c", code], _env(CONNECT_TOKEN_TTL_SECONDS="86400"))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "86400"


def test_a_trailing_dot_is_another_origin(api_client, setup, owner_key):
    # One origin rule everywhere (engine/origins.py): `client.example.com.` is not `client.example.com`.
    response = _mint(api_client, setup.app, {"user_id": "u", "redirect_url": "https://client.example.com./x"},
                     owner_key)
    assert response.status_code == 400
    assert "redirect_url" in response.json()["error"]["details"]
