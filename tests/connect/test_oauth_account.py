"""SPEC §13 account identity for OAuth2: the provider's userinfo_url, read with the new access token after the
callback, and a connect token's expected_account. Against the real test provider (django-oauth-toolkit)."""

from __future__ import annotations

import httpx
import pytest
from oauth2_provider.models import AccessToken
from rest_framework.test import APIClient

from apps.connect import tokens
from apps.connect.models import EndUserLink
from apps.connections.models import Connection
from tests.connect.conftest import bearer, build_connect_setup
from tests.connect.provider_flow import consent
from tests.oauth_provider.support import CLIENT_SECRET, PROVIDER_USER, register_platform_client

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
    setup = build_connect_setup(project, provider_base=provider_base, client_secret=CLIENT_SECRET,
                                revoke_url=f"{provider_base}/o/revoke_token/")
    setup.provider.userinfo_url = f"{provider_base}/o/userinfo/"
    setup.provider.save(update_fields=["userinfo_url"])
    return setup


def _authorize(flow, *, expected_account: str = "") -> httpx.Response:
    token, _ = tokens.mint(app_id=str(flow.app.id), user_id="user-42", expected_account=expected_account)
    response = APIClient().post(f"/v1/connect/requirements/{flow.crm.id}/oauth2/authorize", **bearer(token))
    assert response.status_code == 200, response.content
    location = consent(response.json()["data"]["url"]).headers["location"]
    with httpx.Client(follow_redirects=False, trust_env=False) as browser:
        return browser.get(location)


def _expected_id() -> str:
    from django.contrib.auth import get_user_model

    return f"user-{get_user_model().objects.get(username=PROVIDER_USER).pk}"


def test_the_account_comes_from_the_providers_userinfo(flow):
    callback = _authorize(flow)
    assert callback.status_code == 200, callback.text[:300]
    connection = EndUserLink.objects.get(user_id="user-42", requirement=flow.crm).connection
    assert connection.status == Connection.Status.ACTIVE
    assert connection.account == {"id": _expected_id(), "label": f"{PROVIDER_USER}@provider.example"}


def test_the_expected_account_is_linked(flow):
    callback = _authorize(flow, expected_account=_expected_id())
    assert callback.status_code == 200
    assert EndUserLink.objects.get(requirement=flow.crm).connection.status == Connection.Status.ACTIVE


def test_another_account_than_the_expected_one_is_refused_and_nothing_is_stored(flow):
    callback = _authorize(flow, expected_account="user-somebody-else")
    assert callback.status_code == 400
    assert "another account" in callback.text
    connection = EndUserLink.objects.get(requirement=flow.crm).connection
    assert connection.status == Connection.Status.INCOMPLETE  # as before consent: no token stored
    assert "access_token" not in connection.config and connection.account is None
    assert not AccessToken.objects.exists()  # and the grant was revoked at the provider


def test_a_failing_userinfo_stores_the_connection_without_an_account(flow, provider_base):
    flow.provider.userinfo_url = f"{provider_base}/o/no-such-userinfo/"
    flow.provider.save(update_fields=["userinfo_url"])
    callback = _authorize(flow)
    assert callback.status_code == 200
    connection = EndUserLink.objects.get(requirement=flow.crm).connection
    assert connection.status == Connection.Status.ACTIVE and connection.account is None


def test_a_failing_userinfo_with_an_expected_account_is_refused(flow, provider_base):
    flow.provider.userinfo_url = f"{provider_base}/o/no-such-userinfo/"
    flow.provider.save(update_fields=["userinfo_url"])
    callback = _authorize(flow, expected_account=_expected_id())
    assert callback.status_code == 400
    assert EndUserLink.objects.get(requirement=flow.crm).connection.status == Connection.Status.INCOMPLETE
