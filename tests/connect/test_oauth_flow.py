"""OAuth2 authorization code + PKCE against a real authorization server (django-oauth-toolkit on loopback).

The provider runs in the same live server under /o/, addressed as 127.0.0.1 while the platform is
`localhost`: two origins, as with a real provider.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from oauth2_provider.models import AccessToken, RefreshToken

from apps.connect.models import EndUserLink
from apps.connect.services import oauth_authorization_complete
from apps.connections import oauth_flows
from apps.connections.models import Connection, OAuthState
from apps.connections.oauth_client import OAuthFlowError
from apps.connections.services import connection_create
from apps.core.errors import BadRequest
from tests import factories
from tests.connect.conftest import bearer, build_connect_setup, connect_token
from tests.connect.provider_flow import consent
from tests.oauth_provider.support import CLIENT_SECRET, register_platform_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def platform(live_server, settings):
    settings.PLATFORM_URL = live_server.url
    return live_server.url


@pytest.fixture
def provider_base(live_server):
    return live_server.url.replace("localhost", "127.0.0.1")


@pytest.fixture
def flow(platform, provider_base, project):
    register_platform_client(redirect_uri=f"{platform}/connect/oauth2/callback")
    return build_connect_setup(project, provider_base=provider_base, client_secret=CLIENT_SECRET,
                               revoke_url=f"{provider_base}/o/revoke_token/")


def _authorize_via_api(flow, user_id="user-42") -> str:
    from rest_framework.test import APIClient

    response = APIClient().post(f"/v1/connect/requirements/{flow.crm.id}/oauth2/authorize",
                                **bearer(connect_token(flow.app, user_id)))
    assert response.status_code == 200, response.content
    return response.json()["data"]["url"]


def _callback_query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text[:500]
    location = response.headers["location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_full_authorization_code_flow_makes_the_connection_active(flow, platform):
    url = _authorize_via_api(flow)
    answer = consent(url)
    location = answer.headers["location"]
    assert location.startswith(f"{platform}/connect/oauth2/callback?")
    with httpx.Client(follow_redirects=False, trust_env=False) as browser:
        callback = browser.get(location)
    assert callback.status_code == 200  # API flow without redirect_url: a "you can close this window" page
    assert "is connected" in callback.text
    link = EndUserLink.objects.select_related("connection").get(user_id="user-42", requirement=flow.crm)
    connection = link.connection
    assert connection.status == Connection.Status.ACTIVE
    stored = AccessToken.objects.get()
    assert connection.config["access_token"] == stored.token
    assert connection.config["refresh_token"] == RefreshToken.objects.get().token
    assert connection.config["scope"] == "read"
    assert connection.config["expires_at"] > 0 and connection.expires_at is not None
    assert OAuthState.objects.get().used_at is not None
    assert stored.token not in callback.text


def test_the_provider_checks_the_pkce_verifier(flow):
    url = _authorize_via_api(flow)
    query = _callback_query(consent(url))
    OAuthState.objects.update(code_verifier="a-wrong-verifier-of-sufficient-length-0123456789abcdef")
    with pytest.raises(OAuthFlowError) as exc:
        oauth_authorization_complete(state=query["state"], code=query["code"])
    assert exc.value.details == {"provider_error": "invalid_grant"}
    assert Connection.objects.get(app=flow.app).status == Connection.Status.INCOMPLETE
    assert not AccessToken.objects.exists()


def test_the_authorization_request_carries_an_s256_challenge_the_provider_requires(flow):
    url = _authorize_via_api(flow)
    without_pkce = url.replace("code_challenge_method=S256", "").replace("code_challenge=", "x_challenge=")
    answer = consent(without_pkce)
    # The provider refuses: either an error page or a redirect carrying an error, never a code.
    if answer.status_code == 302:
        assert "code=" not in answer.headers["location"] and "error=" in answer.headers["location"]
    else:
        assert "code=" not in answer.text


def test_a_replayed_state_is_refused(flow, platform):
    url = _authorize_via_api(flow)
    location = consent(url).headers["location"]
    with httpx.Client(follow_redirects=False, trust_env=False) as browser:
        assert browser.get(location).status_code == 200
        first_token = Connection.objects.get(app=flow.app).config["access_token"]
        replay = browser.get(location)
    assert replay.status_code == 400
    assert "already used" in replay.text
    assert Connection.objects.get(app=flow.app).config["access_token"] == first_token
    assert AccessToken.objects.count() == 1


def test_an_unknown_or_expired_state_is_refused(flow, platform):
    with httpx.Client(follow_redirects=False, trust_env=False) as browser:
        unknown = browser.get(f"{platform}/connect/oauth2/callback", params={"state": "forged", "code": "x"})
        assert unknown.status_code == 400 and "unknown" in unknown.text
        url = _authorize_via_api(flow)
        location = consent(url).headers["location"]
        from django.utils import timezone

        OAuthState.objects.update(expires_at=timezone.now())
        expired = browser.get(location)
    assert expired.status_code == 400 and "expired" in expired.text
    assert Connection.objects.get(app=flow.app).status == Connection.Status.INCOMPLETE


def test_the_provider_refuses_a_redirect_uri_that_is_not_registered(flow, settings, live_server):
    settings.PLATFORM_URL = "http://evil.localhost:1"
    url = _authorize_via_api(flow)
    assert "redirect_uri=http%3A%2F%2Fevil.localhost%3A1%2Fconnect%2Foauth2%2Fcallback" in url
    answer = consent(url)
    # RFC 6749 4.1.2.1: an unregistered redirect URI is an error page at the provider, never a redirect.
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert "Mismatching redirect URI" in answer.text


def test_the_code_is_only_exchanged_with_the_exact_redirect_uri(flow):
    url = _authorize_via_api(flow)
    query = _callback_query(consent(url))
    OAuthState.objects.update(redirect_uri="http://localhost:1/connect/oauth2/callback")
    with pytest.raises(OAuthFlowError):
        oauth_authorization_complete(state=query["state"], code=query["code"])
    assert not AccessToken.objects.exists()


def test_a_declined_consent_leaves_the_connection_incomplete(flow, platform):
    url = _authorize_via_api(flow)
    answer = consent(url, allow=False)
    location = answer.headers["location"]
    assert "error=access_denied" in location
    with httpx.Client(follow_redirects=False, trust_env=False) as browser:
        response = browser.get(location)
    assert response.status_code == 400 and "declined" in response.text
    assert Connection.objects.get(app=flow.app).status == Connection.Status.INCOMPLETE
    assert OAuthState.objects.get().used_at is not None


@pytest.mark.skipif(
    "sqlite" in __import__("django.conf").conf.settings.DATABASES["default"]["ENGINE"],
    reason="The refresh holds the database write lock during the provider call (single flight); on SQLite that "
    "is the whole database, and this test provider writes to the same database, so it would wait on us. A real "
    "provider has its own storage; PostgreSQL (row lock) runs this test.",
)
def test_refresh_against_the_provider(flow):
    url = _authorize_via_api(flow)
    query = _callback_query(consent(url))
    oauth_authorization_complete(state=query["state"], code=query["code"])
    connection = Connection.objects.get(app=flow.app)
    old_access, old_refresh = connection.config["access_token"], connection.config["refresh_token"]
    assert oauth_flows.force_refresh(connection_id=connection.id) is True
    connection.refresh_from_db()
    assert connection.config["access_token"] != old_access
    assert connection.config["refresh_token"] != old_refresh  # the provider rotates refresh tokens
    assert AccessToken.objects.filter(token=connection.config["access_token"]).exists()


def test_revocation_against_the_provider(flow):
    url = _authorize_via_api(flow)
    query = _callback_query(consent(url))
    oauth_authorization_complete(state=query["state"], code=query["code"])
    connection = Connection.objects.get(app=flow.app)
    assert oauth_flows.revoke_upstream(connection=connection) is True
    refresh = RefreshToken.objects.get(token=connection.config["refresh_token"])
    assert refresh.revoked is not None
    assert not AccessToken.objects.filter(token=connection.config["access_token"]).exists()


def test_a_hosted_page_flow_is_bound_to_the_browser_session(flow, platform):
    from django.test import Client

    alice, mallory = Client(), Client()
    token = connect_token(flow.app, "user-42")
    assert alice.get("/connect", {"token": token}).status_code == 302
    url = alice.post(f"/connect/requirements/{flow.crm.id}/authorize")["Location"]
    location = consent(url).headers["location"]
    path = location.replace(platform, "")
    # The callback link opened in another browser (no session, or another session) is refused.
    refused = mallory.get(path)
    assert refused.status_code == 400 and "another browser session" in refused.content.decode()
    assert Connection.objects.get(app=flow.app).status == Connection.Status.INCOMPLETE


def test_the_hosted_page_flow_completes_in_the_same_session(flow, platform):
    from django.test import Client

    alice = Client()
    alice.get("/connect", {"token": connect_token(flow.app, "user-42")})
    url = alice.post(f"/connect/requirements/{flow.crm.id}/authorize")["Location"]
    location = consent(url).headers["location"]
    response = alice.get(location.replace(platform, ""))
    assert response.status_code == 302 and response["Location"] == "/connect"
    assert Connection.objects.get(app=flow.app).status == Connection.Status.ACTIVE
    assert "Your CRM account is connected." in alice.get("/connect").content.decode()


def test_an_api_flow_returns_to_the_apps_redirect_url(flow, platform):
    from rest_framework.test import APIClient

    token = connect_token(flow.app, "user-42", redirect_url="https://client.example.com/done")
    url = APIClient().post(f"/v1/connect/requirements/{flow.crm.id}/oauth2/authorize", **bearer(token)).json()["data"]["url"]
    location = consent(url).headers["location"]
    with httpx.Client(follow_redirects=False, trust_env=False) as browser:
        response = browser.get(location)
    assert response.status_code == 302 and response.headers["location"] == "https://client.example.com/done"


def test_project_connection_flow_from_the_admin(flow, platform, provider_base):
    connection = connection_create(project=flow.project, name="shared-crm", type="oauth2",
                                   config={"provider_id": str(flow.provider.id), "url": "https://crm.example.com",
                                           "scopes": ["read"]}, actor="test")
    assert connection.status == Connection.Status.INCOMPLETE
    url = oauth_flows.start_project_authorization(connection=connection, actor="test")
    assert url.startswith(f"{provider_base}/o/authorize/?")
    location = consent(url).headers["location"]
    with httpx.Client(follow_redirects=False, trust_env=False) as browser:
        response = browser.get(location)
    assert response.status_code == 302
    assert response.headers["location"].startswith("/admin/")
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE
    assert connection.config["access_token"] == AccessToken.objects.get().token
    assert not EndUserLink.objects.exists()


def test_an_end_user_connection_cannot_start_a_project_flow(flow):
    link = factories.link_end_user(flow.app, flow.crm, "u", {"provider_id": str(flow.provider.id)})
    with pytest.raises(BadRequest, match="End-user connections are authorized through the connect flow"):
        oauth_flows.start_project_authorization(connection=link.connection)
