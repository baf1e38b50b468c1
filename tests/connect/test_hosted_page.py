"""The hosted connect page (`/connect`), driven with Django's test client (the browser tests drive Chromium)."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta

import pytest
from django.test import Client

from apps.connect import services as connect_services
from apps.connect import tokens
from apps.connect.models import EndUserLink, UsedConnectToken
from apps.connections.models import Connection, OAuthState
from tests import factories
from tests.conftest import assert_no_canary
from tests.connect.conftest import CLIENT_APP_ORIGIN, bearer, connect_token

pytestmark = pytest.mark.django_db

USER42_KEY = factories.CANARIES["user42_api_key"]


def _open(client: Client, target, user_id="user-42", redirect_url=""):
    """Exchange a fresh connect token (for `target`: an App or a ConnectSetup) for a page session."""
    token = connect_token(getattr(target, "app", target), user_id, redirect_url=redirect_url)
    response = client.get("/connect", {"token": token})
    assert response.status_code == 302, response.content
    return token, response


def _assert_secure_headers(response):
    csp = response["Content-Security-Policy"]
    for directive in ("default-src 'none'", "style-src 'self'", "img-src 'self'", "frame-ancestors 'none'",
                      "base-uri 'none'", "form-action 'self'"):
        assert directive in csp
    assert "script-src" not in csp and "unsafe" not in csp
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cache-Control"] == "no-store"


class TestTokenExchange:
    def test_the_token_becomes_a_session_and_leaves_the_url(self, client, setup):
        token, response = _open(client, setup)
        assert response["Location"] == "/connect"
        _assert_secure_headers(response)
        cookie = response.cookies["sessionid"]
        assert cookie["httponly"] and cookie["samesite"] == "Lax"
        page = client.get("/connect")
        assert page.status_code == 200
        assert token not in page.content.decode()
        _assert_secure_headers(page)

    def test_the_session_key_is_cycled(self, client, setup):
        client.get("/connect")  # no token: an anonymous visit
        client.cookies["sessionid"] = "attacker-chosen-session-id"
        _, response = _open(client, setup)
        assert response.cookies["sessionid"].value != "attacker-chosen-session-id"

    def test_a_new_token_replaces_the_previous_identity(self, client, setup, other_setup):
        _open(client, setup, "user-42")
        _open(client, other_setup, "user-77")
        page = client.get("/connect").content.decode()
        assert other_setup.app.name in page and setup.app.name not in page

    @pytest.mark.parametrize("token", ["", "garbage", "a.b.c"])
    def test_a_bad_token_gets_a_clear_page(self, client, setup, token):
        response = client.get("/connect", {"token": token})
        assert response.status_code == 401
        html = response.content.decode()
        assert "This connect link is not valid" in html
        assert "Traceback" not in html
        _assert_secure_headers(response)

    def test_an_expired_token_gets_a_clear_page(self, client, setup, settings):
        settings.CONNECT_TOKEN_TTL_SECONDS = -1
        response = client.get("/connect", {"token": connect_token(setup.app, "u")})
        assert response.status_code == 401
        assert "This connect link has expired" in response.content.decode()

    def test_without_a_session_the_page_explains_what_to_do(self, client, setup):
        response = client.get("/connect")
        assert response.status_code == 401
        assert "needs a connect link" in response.content.decode()

    def test_a_session_outliving_its_token_is_refused(self, client, setup):
        _open(client, setup)
        session = client.session
        session["connect"] = {**session["connect"], "exp": 1}
        session.save()
        response = client.get("/connect")
        assert response.status_code == 401
        assert "expired" in response.content.decode()

    def test_it_refuses_the_wrong_method(self, client, setup):
        _open(client, setup)
        assert client.post("/connect").status_code == 405
        assert client.get(f"/connect/requirements/{setup.billing.id}/credentials").status_code == 405


class TestSingleUse:
    """SPEC §12: the page exchange is single-use; the browser that holds the session keeps working."""

    def test_another_browser_presenting_the_token_gets_already_used(self, client, setup):
        token, _ = _open(client, setup)
        other = Client()
        response = other.get("/connect", {"token": token})
        assert response.status_code == 410
        html = response.content.decode()
        assert "This link was already used" in html
        assert 'class="state state-error"' in html  # the connect error page, like expired/invalid
        assert "Traceback" not in html and token not in html
        _assert_secure_headers(response)
        assert "connect" not in other.session  # no session for the second browser
        assert other.get("/connect").status_code == 401
        # ... and the first browser is unaffected.
        page = client.get("/connect")
        assert page.status_code == 200 and setup.app.name in page.content.decode()

    def test_the_same_browser_may_open_the_link_again(self, client, setup):
        token, _ = _open(client, setup)
        session_key = client.session.session_key
        again = client.get("/connect", {"token": token})
        assert again.status_code == 302 and again["Location"] == "/connect"
        assert client.session.session_key == session_key
        assert client.get("/connect").status_code == 200
        assert UsedConnectToken.objects.count() == 1

    def test_a_browser_holding_another_session_is_refused_too(self, client, setup, other_setup):
        token, _ = _open(Client(), setup)
        _open(client, other_setup, "user-77")  # this browser holds a session, for another token
        assert client.get("/connect", {"token": token}).status_code == 410
        assert other_setup.app.name in client.get("/connect").content.decode()  # its own session still works

    def test_the_claim_is_one_atomic_insert(self, setup):
        _, claims = tokens.mint(app_id=str(setup.app.id), user_id="u")
        assert connect_services.connect_token_claim_for_page(claims=claims) is True
        assert connect_services.connect_token_claim_for_page(claims=claims) is False
        assert UsedConnectToken.objects.get().jti == claims.jti

    def test_expired_rows_are_purged_on_the_way(self, setup):
        from django.utils import timezone

        UsedConnectToken.objects.create(jti="old", expires_at=timezone.now() - timedelta(seconds=1))
        UsedConnectToken.objects.create(jti="live", expires_at=timezone.now() + timedelta(minutes=5))
        _, claims = tokens.mint(app_id=str(setup.app.id), user_id="u")
        connect_services.connect_token_claim_for_page(claims=claims)
        assert set(UsedConnectToken.objects.values_list("jti", flat=True)) == {"live", claims.jti}

    def test_a_page_exchanged_token_no_longer_works_on_the_connect_api(self, client, api_client, setup):
        token, _ = _open(client, setup)
        response = api_client.get("/v1/connect/requirements", **bearer(token))
        assert response.status_code == 401
        assert "hosted connect page" in response.json()["error"]["message"]

    def test_an_api_only_token_keeps_working_on_the_api(self, api_client, setup):
        token = connect_token(setup.app, "user-42")
        for _ in range(3):
            assert api_client.get("/v1/connect/requirements", **bearer(token)).status_code == 200
        assert not UsedConnectToken.objects.exists()

    def test_no_log_record_of_the_flow_carries_the_token(self, client, setup, caplog):
        caplog.set_level(logging.DEBUG, logger="django.request")  # 4xx lines too (ERROR only by default)
        with caplog.at_level(logging.DEBUG):
            token, _ = _open(client, setup)
            client.get("/connect")
            client.get("/connect", {"token": token})
            Client().get("/connect", {"token": token})  # refused: 410, logged by django.request
            Client().get("/connect", {"token": token + "x"})  # invalid: 401
        assert any(r.name == "django.request" and r.status_code == 410 for r in caplog.records)
        for record in caplog.records:
            assert token[:40] not in record.getMessage()
            assert token[:40] not in repr(record.__dict__.get("args"))


class TestPage:
    def test_it_lists_requirements_and_builds_forms_from_the_type(self, client, setup):
        _open(client, setup)
        html = client.get("/connect").content.decode()
        assert setup.app.name in html
        assert "Your billing account" in html and "Your CRM account" in html
        assert 'type="password"' in html
        assert re.search(r'<label for="r-[0-9a-f-]+-api_key">API key', html)
        assert re.search(r'name="f-api_key" type="password"', html)
        assert re.search(r'name="f-url" type="url"', html)
        assert 'value="Authorization"' in html
        assert "csrfmiddlewaretoken" in html
        assert f'action="/connect/requirements/{setup.crm.id}/authorize"' in html
        assert "Connect Your CRM account" in html
        assert "<script" not in html
        assert 'name="viewport"' in html

    def test_choices_become_selects_and_mappings_json_textareas(self, client, project):
        workflow = factories.make_workflow(project, "generic")
        requirement = factories.make_requirement(workflow, name="api", connection_type="http", title="Your API")
        version = factories.make_version(workflow, factories.definition(
            factories.http_node("call", ref={"requirement": str(requirement.id)}, url="https://api.example.com/x")))
        app = factories.make_app(project, name="Generic", version=version)
        _open(client, app)
        html = client.get("/connect").content.decode()
        assert re.search(r'<select id="r-[0-9a-f-]+-method" name="f-method"', html)
        assert '<option value="GET" selected>' in html
        assert re.search(r'<textarea id="r-[0-9a-f-]+-headers" name="f-headers"', html)
        response = client.post(f"/connect/requirements/{requirement.id}/credentials", {
            "f-url": "https://api.example.com", "f-method": "POST",
            "f-headers": json.dumps({"X-Api-Key": USER42_KEY}), "f-params": "", "f-data": "", "f-parameters": "account_id\n",
        })
        assert response.status_code == 302
        connection = EndUserLink.objects.get(app=app).connection
        assert connection.config["headers"] == {"X-Api-Key": USER42_KEY}
        assert connection.config["method"] == "POST" and connection.config["parameters"] == ["account_id"]

    def test_a_mapping_that_is_not_json_is_a_field_error(self, client, project):
        workflow = factories.make_workflow(project, "generic")
        requirement = factories.make_requirement(workflow, name="api", connection_type="http", title="Your API")
        version = factories.make_version(workflow, factories.definition(
            factories.http_node("call", ref={"requirement": str(requirement.id)}, url="https://api.example.com/x")))
        app = factories.make_app(project, name="Generic", version=version)
        _open(client, app)
        response = client.post(f"/connect/requirements/{requirement.id}/credentials", {"f-headers": "{nope"})
        assert response.status_code == 400
        assert "must be valid JSON" in response.content.decode()

    def test_submitting_the_form_links_and_shows_success(self, client, setup):
        _open(client, setup)
        response = client.post(f"/connect/requirements/{setup.billing.id}/credentials", {
            "f-url": "https://billing.example.com", "f-api_key": USER42_KEY, "f-header": "Authorization", "f-prefix": "Bearer ",
        })
        assert response.status_code == 302 and response["Location"] == "/connect"
        _assert_secure_headers(response)
        connection = EndUserLink.objects.select_related("connection").get(user_id="user-42").connection
        assert connection.status == Connection.Status.ACTIVE
        assert connection.config["api_key"] == USER42_KEY and connection.config["prefix"] == "Bearer "
        html = client.get("/connect").content.decode()
        assert "Your billing account is connected." in html
        assert 'data-status="completed"' in html
        assert_no_canary(html)

    def test_errors_are_shown_per_field_and_secrets_are_not_echoed(self, client, setup):
        _open(client, setup)
        response = client.post(f"/connect/requirements/{setup.billing.id}/credentials", {
            "f-url": "not a url", "f-api_key": USER42_KEY,
        })
        assert response.status_code == 400
        html = response.content.decode()
        assert "must be an http(s) URL" in html
        assert 'value="not a url"' in html
        assert 'aria-invalid="true"' in html
        assert_no_canary(html)
        assert not EndUserLink.objects.exists()
        _assert_secure_headers(response)

    def test_csrf_is_enforced(self, setup):
        client = Client(enforce_csrf_checks=True)
        _open(client, setup)
        response = client.post(f"/connect/requirements/{setup.billing.id}/credentials",
                               {"f-url": "https://b.example.com", "f-api_key": "k"})
        assert response.status_code == 403
        assert not EndUserLink.objects.exists()

    @pytest.mark.parametrize("origin,fetch_site,status", [
        ("null", "same-origin", 302),  # what Chromium sends under Referrer-Policy: no-referrer
        ("null", None, 302),  # a browser without Fetch Metadata: the token still decides
        ("null", "cross-site", 403),
        ("null", "same-site", 403),
        ("https://evil.example.com", "cross-site", 403),
        ("http://testserver", "same-origin", 302),
    ])
    def test_the_origin_check_under_no_referrer(self, setup, origin, fetch_site, status):
        client = Client(enforce_csrf_checks=True)
        _open(client, setup)
        html = client.get("/connect").content.decode()
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
        headers = {"HTTP_ORIGIN": origin}
        if fetch_site:
            headers["HTTP_SEC_FETCH_SITE"] = fetch_site
        response = client.post(f"/connect/requirements/{setup.billing.id}/credentials",
                               {"csrfmiddlewaretoken": csrf, "f-url": "https://b.example.com", "f-api_key": "k"}, **headers)
        assert response.status_code == status
        assert EndUserLink.objects.exists() is (status == 302)
        assert response["Content-Security-Policy"] and response["Cache-Control"] == "no-store"

    def test_null_origin_without_the_token_is_refused(self, setup):
        client = Client(enforce_csrf_checks=True)
        _open(client, setup)
        response = client.post(f"/connect/requirements/{setup.billing.id}/credentials",
                               {"f-url": "https://b.example.com", "f-api_key": "k"},
                               HTTP_ORIGIN="null", HTTP_SEC_FETCH_SITE="same-origin")
        assert response.status_code == 403

    def test_forms_need_the_session(self, client, setup):
        response = client.post(f"/connect/requirements/{setup.billing.id}/credentials",
                               {"f-url": "https://b.example.com", "f-api_key": "k"})
        assert response.status_code == 401
        assert not EndUserLink.objects.exists()

    def test_another_apps_requirement_cannot_be_submitted(self, client, setup, other_setup):
        _open(client, setup)
        response = client.post(f"/connect/requirements/{other_setup.billing.id}/credentials",
                               {"f-url": "https://b.example.com", "f-api_key": "k"})
        assert response.status_code == 302
        assert not EndUserLink.objects.exists()

    def test_disconnect(self, client, setup):
        _open(client, setup)
        factories.link_end_user(setup.app, setup.billing, "user-42", {"url": "https://b.example.com", "api_key": "k"})
        html = client.get("/connect").content.decode()
        assert f'action="/connect/requirements/{setup.billing.id}/unlink"' in html
        response = client.post(f"/connect/requirements/{setup.billing.id}/unlink")
        assert response.status_code == 302
        assert not EndUserLink.objects.exists()
        assert "is disconnected" in client.get("/connect").content.decode()

    def test_when_everything_is_complete_it_returns_to_the_redirect_url(self, client, setup):
        _open(client, setup, redirect_url=f"{CLIENT_APP_ORIGIN}/connected?user=42")
        factories.link_end_user(setup.app, setup.crm, "user-42", {"provider_id": str(setup.provider.id), "access_token": "t"})
        html = client.get("/connect").content.decode()
        assert "Return to" not in html
        client.post(f"/connect/requirements/{setup.billing.id}/credentials",
                    {"f-url": "https://billing.example.com", "f-api_key": "k"})
        html = client.get("/connect").content.decode()
        assert f"Return to {CLIENT_APP_ORIGIN}" in html
        assert f'href="{CLIENT_APP_ORIGIN}/connected?user=42"' in html
        assert 'http-equiv="refresh"' in html
        # The automatic return happens once, right after completion; later visits offer the link only.
        html = client.get("/connect").content.decode()
        assert "Return to" in html and 'http-equiv="refresh"' not in html

    def test_the_connect_button_starts_oauth_bound_to_this_browser(self, client, setup):
        _open(client, setup)
        response = client.post(f"/connect/requirements/{setup.crm.id}/authorize")
        assert response.status_code == 302
        assert response["Location"].startswith("https://auth.example.com/o/authorize/?")
        assert "form-action 'self' https://auth.example.com" in response["Content-Security-Policy"]
        state = OAuthState.objects.get()
        assert state.browser_binding and state.return_to == "/connect"
        page = client.get("/connect")
        assert "https://auth.example.com" in page["Content-Security-Policy"]


def test_a_submitted_http_header_mapping_is_never_rendered_back():
    # Every header/param/data value of an http connection is a secret (SPEC §12): after a form error the
    # user re-types them, as for a password; non-secret fields are shown again.
    from apps.connect import forms as connect_forms

    data = {"f-url": "not a url", "f-headers": '{"X-Honeycomb-Team": "hc-team-key-0a1b2c3d"}',
            "f-params": '{"appid": "owm-appid-9f8e7d6c"}', "f-data": '{"team": "blue-team-4711"}'}
    fields = {f.field.name: f for f in connect_forms.credential_fields("http", id_prefix="r", data=data)}
    assert fields["url"].value == "not a url"
    for name in ("headers", "params", "data"):
        assert fields[name].secret and fields[name].value == ""
    assert "hc-team-key" not in repr([f.value for f in fields.values()])
