"""The connect API (`/v1/connect/*`, platform host, connect-token auth)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from apps.connect.models import EndUserLink
from apps.connect.selectors import requirement_statuses
from apps.connections.models import Connection, ConnectionConfigChange, OAuthState
from tests import factories
from tests.conftest import assert_no_canary
from tests.connect.conftest import bearer, build_connect_setup, connect_token

pytestmark = pytest.mark.django_db

USER42_KEY = factories.CANARIES["user42_api_key"]
USER43_KEY = factories.CANARIES["user43_api_key"]


def _creds(api_client, token, requirement_id, config=None, type_="http_api_key"):
    body = {"type": type_, "config": config if config is not None else {"url": "https://billing.example.com",
                                                                        "api_key": USER42_KEY}}
    return api_client.post(f"/v1/connect/requirements/{requirement_id}/credentials", body, format="json", **bearer(token))


def _statuses(api_client, token) -> dict[str, str]:
    response = api_client.get("/v1/connect/requirements", **bearer(token))
    assert response.status_code == 200, response.content
    return {item["name"]: item["status"] for item in response.json()["data"]}


class TestRequirements:
    def test_it_lists_the_deployed_requirements_with_status(self, api_client, setup):
        response = api_client.get("/v1/connect/requirements", **bearer(connect_token(setup.app, "user-42")))
        assert response.status_code == 200
        assert response["Cache-Control"] == "no-store"
        data = {item["name"]: item for item in response.json()["data"]}
        assert set(data) == {"billing", "crm"}
        assert data["billing"] == {
            "id": str(setup.billing.id), "type": "connection", "name": "billing", "title": "Your billing account",
            "description": "", "spec": {"connection_type": "http_api_key"}, "status": "pending",
            # SPEC §13: what the user is asked for (nothing fixed here: every field) and the linked account.
            "fields": [
                {"name": "url", "label": "Base URL", "kind": "url", "required": True, "secret": False},
                {"name": "api_key", "label": "API key", "kind": "string", "required": True, "secret": True},
                {"name": "header", "label": "Header name", "kind": "string", "required": False, "secret": False},
                {"name": "prefix", "label": "Value prefix", "kind": "string", "required": False, "secret": False},
            ],
            "account": None,
        }
        assert data["crm"]["spec"]["connection_type"] == "oauth2"

    def test_only_an_active_link_counts_as_completed(self, api_client, setup):
        token = connect_token(setup.app, "user-42")
        factories.link_end_user(setup.app, setup.billing, "user-42", {"url": "https://b.example.com", "api_key": "k"},
                                status=Connection.Status.UNAUTHORIZED)
        assert _statuses(api_client, token)["billing"] == "pending"
        Connection.objects.filter(app=setup.app).update(status=Connection.Status.ACTIVE)
        assert _statuses(api_client, token)["billing"] == "completed"

    def test_requirement_statuses_take_one_query_whatever_the_number_of_users(self, setup):
        for n in range(5):
            factories.link_end_user(setup.app, setup.billing, f"user-{n}", {"url": "https://b.example.com", "api_key": "k"})
        with CaptureQueriesContext(db_connection) as queries:
            statuses = requirement_statuses(app=setup.app, user_id="user-3")
        assert len(queries) == 1
        assert {s.requirement.name: s.status for s in statuses} == {"billing": "completed", "crm": "pending"}

    def test_an_app_without_deployment_has_no_requirements(self, api_client, teammate_project):
        app = factories.make_app(teammate_project, name="Empty")
        response = api_client.get("/v1/connect/requirements", **bearer(connect_token(app, "u")))
        assert response.json() == {"data": []}

    def test_it_refuses_the_wrong_method(self, api_client, setup):
        response = api_client.post("/v1/connect/requirements", {}, format="json", **bearer(connect_token(setup.app, "u")))
        assert response.status_code == 405


class TestCredentials:
    def test_it_stores_an_active_end_user_connection(self, api_client, setup):
        token = connect_token(setup.app, "user-42")
        response = _creds(api_client, token, setup.billing.id)
        assert response.status_code == 201, response.content
        assert response.json() == {"message": "created"}
        link = EndUserLink.objects.select_related("connection").get(app=setup.app, user_id="user-42", requirement=setup.billing)
        connection = link.connection
        assert connection.status == Connection.Status.ACTIVE
        assert (connection.app_id, connection.user_id, connection.project_id) == (setup.app.id, "user-42", setup.project.id)
        assert connection.owner == Connection.Owner.END_USER
        assert connection.config == {"url": "https://billing.example.com", "api_key": USER42_KEY,
                                     "header": "Authorization", "prefix": "Bearer "}
        assert _statuses(api_client, token)["billing"] == "completed"
        assert_no_canary(response.content)

    def test_linking_again_replaces_the_config_and_keeps_the_connection_id(self, api_client, setup):
        token = connect_token(setup.app, "user-42")
        _creds(api_client, token, setup.billing.id)
        first = EndUserLink.objects.get(user_id="user-42")
        Connection.objects.filter(pk=first.connection_id).update(status=Connection.Status.UNAUTHORIZED)
        response = _creds(api_client, token, setup.billing.id,
                          {"url": "https://billing2.example.com", "api_key": "new-key", "header": "X-Api-Key", "prefix": ""})
        assert response.status_code == 201
        link = EndUserLink.objects.select_related("connection").get(user_id="user-42")
        assert (link.id, link.connection_id) == (first.id, first.connection_id)
        assert link.connection.config["api_key"] == "new-key"
        assert link.connection.config["url"] == "https://billing2.example.com"
        assert link.connection.status == Connection.Status.ACTIVE
        assert Connection.objects.filter(app=setup.app).count() == 1
        history = list(ConnectionConfigChange.objects.filter(connection=link.connection).order_by("changed_at"))
        assert len(history) == 2
        assert history[-1].actor == "end_user:user-42"
        assert set(history[-1].changed_fields) == {"api_key", "url", "header", "prefix"}

    def test_type_aliases_are_accepted(self, api_client, setup):
        response = _creds(api_client, connect_token(setup.app, "u"), setup.billing.id, type_="dynamiq.connections.HttpApiKey")
        assert response.status_code == 201

    @pytest.mark.parametrize("type_", ["http", "openai", "oauth2", "nonsense", ""])
    def test_the_type_must_be_the_requirements(self, api_client, setup, type_):
        response = _creds(api_client, connect_token(setup.app, "u"), setup.billing.id, type_=type_)
        assert response.status_code == 400
        assert "type" in response.json()["error"]["details"]
        assert not EndUserLink.objects.exists()

    def test_oauth2_requirements_are_refused(self, api_client, setup):
        response = _creds(api_client, connect_token(setup.app, "u"), setup.crm.id,
                          {"provider_id": str(setup.provider.id), "access_token": "x"}, type_="oauth2")
        assert response.status_code == 400
        assert not EndUserLink.objects.exists()

    @pytest.mark.parametrize("config,field", [
        ({"api_key": "k"}, "url"),
        ({"url": "https://b.example.com"}, "api_key"),
        ({"url": "ftp://b.example.com", "api_key": "k"}, "url"),
        ({"url": "https://b.example.com", "api_key": "k", "extra": 1}, "config"),
    ])
    def test_the_config_is_validated_against_the_type(self, api_client, setup, config, field):
        response = _creds(api_client, connect_token(setup.app, "u"), setup.billing.id, config)
        assert response.status_code == 400
        assert field in response.json()["error"]["details"]["config"]
        assert not Connection.objects.filter(app=setup.app).exists()

    def test_a_validation_error_never_echoes_the_secret(self, api_client, setup):
        response = _creds(api_client, connect_token(setup.app, "u"), setup.billing.id, {"api_key": USER42_KEY})
        assert response.status_code == 400
        assert_no_canary(response.content)

    @pytest.mark.parametrize("body,field", [
        ({"config": {}}, "type"),
        ({"type": "http_api_key"}, "config"),
        ({"type": "http_api_key", "config": "x"}, "config"),
        ({"type": "http_api_key", "config": {}, "user_id": "other"}, "user_id"),
    ])
    def test_it_accepts_exactly_type_and_config(self, api_client, setup, body, field):
        response = api_client.post(f"/v1/connect/requirements/{setup.billing.id}/credentials", body, format="json",
                                   **bearer(connect_token(setup.app, "u")))
        assert response.status_code == 400
        assert field in response.json()["error"]["details"]

    @pytest.mark.parametrize("requirement_id", ["6a1c4c1e-4b4e-4a53-9a51-2b1f3a7f0000", "not-a-uuid"])
    def test_an_unknown_requirement_is_404(self, api_client, setup, requirement_id):
        response = _creds(api_client, connect_token(setup.app, "u"), requirement_id)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    def test_a_requirement_not_in_the_deployed_version_is_404(self, api_client, setup):
        workflow = setup.billing.workflow
        orphan = factories.make_requirement(workflow, name="later", title="Added later")
        response = _creds(api_client, connect_token(setup.app, "u"), orphan.id)
        assert response.status_code == 404

    def test_it_refuses_the_wrong_method(self, api_client, setup):
        response = api_client.get(f"/v1/connect/requirements/{setup.billing.id}/credentials",
                                  **bearer(connect_token(setup.app, "u")))
        assert response.status_code == 405


class TestAuthorize:
    def test_it_returns_the_provider_url_with_pkce_and_a_stored_state(self, api_client, setup, settings):
        token = connect_token(setup.app, "user-42", redirect_url="https://client.example.com/back")
        response = api_client.post(f"/v1/connect/requirements/{setup.crm.id}/oauth2/authorize", **bearer(token))
        assert response.status_code == 200, response.content
        url = response.json()["data"]["url"]
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://auth.example.com/o/authorize/"
        assert query["response_type"] == "code"
        assert query["client_id"] == "platform-client"
        assert query["redirect_uri"] == settings.PLATFORM_URL + "/connect/oauth2/callback"
        assert query["code_challenge_method"] == "S256"
        assert len(query["code_challenge"]) == 43
        assert query["scope"] == "read"
        assert len(query["state"]) >= 32
        state = OAuthState.objects.get()
        assert state.state_digest != query["state"] and query["state"] not in state.state_digest
        assert state.connect_token_id and state.browser_binding == ""
        assert state.return_to == "https://client.example.com/back"
        link = EndUserLink.objects.select_related("connection").get(user_id="user-42", requirement=setup.crm)
        assert link.connection.status == Connection.Status.INCOMPLETE
        assert _statuses(api_client, token)["crm"] == "pending"
        assert factories.CANARIES["client_secret"] not in url

    def test_it_reuses_the_incomplete_connection(self, api_client, setup):
        token = connect_token(setup.app, "user-42")
        for _ in range(2):
            assert api_client.post(f"/v1/connect/requirements/{setup.crm.id}/oauth2/authorize",
                                   **bearer(token)).status_code == 200
        assert Connection.objects.filter(app=setup.app).count() == 1
        assert OAuthState.objects.count() == 2

    def test_an_api_key_requirement_cannot_be_authorized(self, api_client, setup):
        response = api_client.post(f"/v1/connect/requirements/{setup.billing.id}/oauth2/authorize",
                                   **bearer(connect_token(setup.app, "u")))
        assert response.status_code == 400

    def test_unknown_fields_are_refused(self, api_client, setup):
        response = api_client.post(f"/v1/connect/requirements/{setup.crm.id}/oauth2/authorize",
                                   {"redirect_uri": "https://evil.example.com"}, format="json",
                                   **bearer(connect_token(setup.app, "u")))
        assert response.status_code == 400
        assert "redirect_uri" in response.json()["error"]["details"]


class TestUnlink:
    def test_it_deletes_the_link_and_the_connection(self, api_client, setup):
        token = connect_token(setup.app, "user-42")
        _creds(api_client, token, setup.billing.id)
        response = api_client.delete(f"/v1/connect/requirements/{setup.billing.id}/connection", **bearer(token))
        assert response.status_code == 200
        assert response.json() == {"message": "unlinked", "revoked_upstream": None}
        assert not EndUserLink.objects.exists()
        assert not Connection.objects.filter(app=setup.app).exists()
        assert _statuses(api_client, token)["billing"] == "pending"

    def test_nothing_linked_is_404(self, api_client, setup):
        response = api_client.delete(f"/v1/connect/requirements/{setup.billing.id}/connection",
                                     **bearer(connect_token(setup.app, "u")))
        assert response.status_code == 404

    def test_an_oauth2_link_is_revoked_upstream(self, api_client, project, upstream):
        s = build_connect_setup(project, revoke_url=f"{upstream.url}/revoke")
        factories.link_end_user(s.app, s.crm, "user-42", {"provider_id": str(s.provider.id),
                                                          "access_token": factories.CANARIES["access_token"],
                                                          "refresh_token": factories.CANARIES["refresh_token"]})
        response = api_client.delete(f"/v1/connect/requirements/{s.crm.id}/connection",
                                     **bearer(connect_token(s.app, "user-42")))
        assert response.json() == {"message": "unlinked", "revoked_upstream": True}
        assert upstream.requests[0].path == "/revoke"
        assert not EndUserLink.objects.exists()

    def test_a_failed_upstream_revocation_is_reported_and_the_link_still_removed(self, api_client, project):
        s = build_connect_setup(project, revoke_url="http://127.0.0.1:9/revoke")
        factories.link_end_user(s.app, s.crm, "user-42", {"provider_id": str(s.provider.id), "access_token": "a"})
        response = api_client.delete(f"/v1/connect/requirements/{s.crm.id}/connection",
                                     **bearer(connect_token(s.app, "user-42")))
        assert response.json() == {"message": "unlinked", "revoked_upstream": False}
        assert not EndUserLink.objects.exists()

    def test_it_refuses_the_wrong_method(self, api_client, setup):
        response = api_client.get(f"/v1/connect/requirements/{setup.billing.id}/connection",
                                  **bearer(connect_token(setup.app, "u")))
        assert response.status_code == 405


class TestIsolation:
    def test_user_x_cannot_see_or_change_user_y(self, api_client, setup):
        x, y = connect_token(setup.app, "user-42"), connect_token(setup.app, "user-43")
        _creds(api_client, y, setup.billing.id, {"url": "https://b.example.com", "api_key": USER43_KEY})
        assert _statuses(api_client, x)["billing"] == "pending"
        assert _statuses(api_client, y)["billing"] == "completed"
        # X linking its own does not touch Y's connection.
        _creds(api_client, x, setup.billing.id)
        y_link = EndUserLink.objects.select_related("connection").get(user_id="user-43")
        assert y_link.connection.config["api_key"] == USER43_KEY
        # X unlinking removes only X's.
        api_client.delete(f"/v1/connect/requirements/{setup.billing.id}/connection", **bearer(x))
        assert EndUserLink.objects.filter(user_id="user-43").exists()
        assert not EndUserLink.objects.filter(user_id="user-42").exists()

    def test_a_token_for_app_a_cannot_reach_app_b_requirements(self, api_client, setup, other_setup):
        token_a = connect_token(setup.app, "user-42")
        for requirement in (other_setup.billing, other_setup.crm):
            assert _creds(api_client, token_a, requirement.id).status_code == 404
            assert api_client.post(f"/v1/connect/requirements/{requirement.id}/oauth2/authorize",
                                   **bearer(token_a)).status_code == 404
            assert api_client.delete(f"/v1/connect/requirements/{requirement.id}/connection",
                                     **bearer(token_a)).status_code == 404
        listed = api_client.get("/v1/connect/requirements", **bearer(token_a)).json()["data"]
        assert {item["id"] for item in listed} == {str(setup.billing.id), str(setup.crm.id)}
        assert not EndUserLink.objects.filter(app=other_setup.app).exists()

    def test_same_user_id_in_two_apps_is_two_people(self, api_client, setup, other_setup):
        _creds(api_client, connect_token(setup.app, "user-42"), setup.billing.id)
        assert _statuses(api_client, connect_token(other_setup.app, "user-42"))["billing"] == "pending"

    @pytest.mark.parametrize("headers", [
        {},
        {"HTTP_AUTHORIZATION": "Bearer "},
        {"HTTP_AUTHORIZATION": "Bearer not-a-jwt"},
        {"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"},
    ])
    def test_it_needs_a_connect_token(self, api_client, setup, headers):
        response = api_client.get("/v1/connect/requirements", **headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"

    def test_an_access_key_is_refused(self, api_client, setup, owner_key, org_key):
        for key in (owner_key, org_key):
            response = api_client.get("/v1/connect/requirements", **bearer(key))
            assert response.status_code == 401
            assert "access key" in response.json()["error"]["message"]
            assert _creds(api_client, key, setup.billing.id).status_code == 401

    def test_an_expired_token_is_refused(self, api_client, setup, settings):
        settings.CONNECT_TOKEN_TTL_SECONDS = -5
        token = connect_token(setup.app, "u")
        response = api_client.get("/v1/connect/requirements", **bearer(token))
        assert response.status_code == 401
        assert "expired" in response.json()["error"]["message"]

    def test_a_token_for_a_deleted_app_is_refused(self, api_client, setup):
        token = connect_token(setup.app, "u")
        setup.app.delete()
        assert api_client.get("/v1/connect/requirements", **bearer(token)).status_code == 401

    def test_a_connect_token_is_refused_by_every_other_endpoint(self, api_client, setup, settings):
        token = connect_token(setup.app, "user-42")
        connection = factories.make_connection(setup.project)
        platform = [
            ("get", "/v1/connections"), ("post", "/v1/connections"), ("get", f"/v1/connections/{connection.id}"),
            ("post", f"/v1/connections/{connection.id}/oauth2/authorize"), ("get", "/v1/apps"),
            ("get", f"/v1/apps/{setup.app.id}/links"), ("get", "/v1/workflows"), ("get", "/v1/oauth2/providers"),
            ("post", "/internal/v1/credentials/resolve"),
        ]
        app_host = [("post", "/"), ("get", "/v1/runs"), ("post", "/v1/runs"),
                    ("get", "/v1/requirements/status?user_id=user-42"), ("post", "/v1/connect/tokens")]
        for method, path in platform:
            response = getattr(api_client, method)(path, {}, format="json", **bearer(token))
            assert response.status_code == 401, (path, response.status_code)
        for method, path in app_host:
            response = getattr(api_client, method)(path, {"input": {}} if method == "post" else None, format="json",
                                                   HTTP_HOST=setup.app.hostname, **bearer(token))
            assert response.status_code == 401, (path, response.status_code)
        assert not EndUserLink.objects.exists()

    def test_the_connect_api_is_not_served_on_app_hosts(self, api_client, setup):
        response = api_client.get("/v1/connect/requirements", HTTP_HOST=setup.app.hostname,
                                  **bearer(connect_token(setup.app, "u")))
        # App hosts route only config/app_urls.py: the connect API does not exist there.
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


# --- SPEC §12/§13: an end user's OAuth2 connection takes its origin from the requirement ------------------


def test_the_oauth2_flow_copies_the_requirements_fixed_url_into_the_connection(setup):
    from apps.connect.services import end_user_oauth_authorization_start

    assert setup.crm.spec["config"] == {"url": "https://crm.example.com"}
    end_user_oauth_authorization_start(app=setup.app, user_id="user-42", requirement=setup.crm, connect_token_id="t")
    connection = EndUserLink.objects.select_related("connection").get(user_id="user-42").connection
    assert connection.config["url"] == "https://crm.example.com"
    # An older linked connection without a url gets it on re-authorization.
    Connection.objects.filter(pk=connection.pk).update(config={"provider_id": str(setup.provider.id), "scopes": []})
    end_user_oauth_authorization_start(app=setup.app, user_id="user-42", requirement=setup.crm, connect_token_id="t")
    connection.refresh_from_db()
    assert connection.config["url"] == "https://crm.example.com"


def test_an_oauth2_requirement_without_a_fixed_url_cannot_start_a_flow(setup):
    from apps.connect.services import end_user_oauth_authorization_start
    from apps.core.errors import BadRequest
    from apps.workflows.models import Requirement

    # A requirement saved before spec.config.url was required.
    Requirement.objects.filter(pk=setup.crm.pk).update(spec={**setup.crm.spec, "config": {}})
    setup.crm.refresh_from_db()
    with pytest.raises(BadRequest):
        end_user_oauth_authorization_start(app=setup.app, user_id="user-7", requirement=setup.crm, connect_token_id="t")
    assert not EndUserLink.objects.filter(user_id="user-7").exists()
    assert not Connection.objects.filter(user_id="user-7").exists()
