"""OAuth2 reconnect in place and user verification against a real authorization server (django-oauth-toolkit
on loopback, another origin than the platform): same connection ID, the old grant revoked upstream after the
swap; an abandoned reconnect changes nothing; with a verifier, the grant waits for the App's confirmation.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.utils import timezone
from oauth2_provider.models import AccessToken, RefreshToken
from rest_framework.test import APIClient

from apps.connect.models import ConnectFlow, EndUserLink
from apps.connections.models import Connection, OAuthState
from apps.connections.signals import LINK_CREATED, LINK_RECONNECTED
from tests.connect.conftest import bearer, build_connect_setup, connect_token
from tests.connect.lifecycle_support import VERIFIER_URL
from tests.connect.provider_flow import consent
from tests.oauth_provider.support import CLIENT_SECRET, register_platform_client

pytestmark = pytest.mark.django_db(transaction=True)

USER = "user-42"


@pytest.fixture
def flow(live_server, settings, project):
    settings.PLATFORM_URL = live_server.url
    provider_base = live_server.url.replace("localhost", "127.0.0.1")
    register_platform_client(redirect_uri=f"{live_server.url}/connect/oauth2/callback")
    return build_connect_setup(project, provider_base=provider_base, client_secret=CLIENT_SECRET,
                               revoke_url=f"{provider_base}/o/revoke_token/")


def _authorize(flow) -> str:
    response = APIClient().post(f"/v1/connect/requirements/{flow.crm.id}/oauth2/authorize",
                                **bearer(connect_token(flow.app, USER)))
    assert response.status_code == 200, response.content
    return response.json()["data"]["url"]


def _callback(location: str) -> httpx.Response:
    with httpx.Client(follow_redirects=False, trust_env=False, timeout=30) as browser:
        return browser.get(location)


def _link(flow) -> Connection:
    answer = _callback(consent(_authorize(flow)).headers["location"])
    assert answer.status_code == 200, answer.text
    return EndUserLink.objects.select_related("connection").get(app=flow.app, user_id=USER).connection


def _confirm(flow, owner_key, flow_id, user_id=USER):
    return APIClient().post(f"/apps/{flow.app.id}/v1/connect/flows/{flow_id}/confirm", {"user_id": user_id},
                            format="json", HTTP_AUTHORIZATION=f"Bearer {owner_key}")


def _verify(flow):
    flow.app.connect_verifier_url = VERIFIER_URL
    flow.app.save(update_fields=["connect_verifier_url"])


def test_a_reconnect_swaps_the_new_grant_into_the_same_connection_and_revokes_the_old(flow, events):
    before = _link(flow)
    old_access, old_refresh = before.config["access_token"], before.config["refresh_token"]

    answer = _callback(consent(_authorize(flow)).headers["location"])

    assert answer.status_code == 200, answer.text
    after = Connection.objects.get(app=flow.app)
    assert after.pk == before.pk and after.status == Connection.Status.ACTIVE
    assert after.config["access_token"] != old_access
    assert AccessToken.objects.filter(token=after.config["access_token"]).exists()
    assert RefreshToken.objects.get(token=old_refresh).revoked is not None  # revoked upstream after the swap
    assert RefreshToken.objects.get(token=after.config["refresh_token"]).revoked is None
    assert after.status_reason == "Reconnected; the previous grant was revoked upstream."
    assert events.of(LINK_RECONNECTED) == [str(after.pk)]


def test_a_declined_reconnect_changes_nothing(flow, events):
    before = _link(flow)

    answer = consent(_authorize(flow), allow=False)
    refused = _callback(answer.headers["location"])

    assert refused.status_code == 400
    after = Connection.objects.get(app=flow.app)
    assert (after.pk, after.status, after.config) == (before.pk, Connection.Status.ACTIVE, before.config)
    assert RefreshToken.objects.get(token=before.config["refresh_token"]).revoked is None
    assert events.of(LINK_RECONNECTED) == []


def test_a_reconnect_never_finished_or_expired_changes_nothing(flow, events):
    before = _link(flow)
    _authorize(flow)  # consent never given
    location = consent(_authorize(flow)).headers["location"]
    OAuthState.objects.filter(used_at__isnull=True).update(expires_at=timezone.now())

    assert _callback(location).status_code == 400  # the state expired

    after = Connection.objects.get(app=flow.app)
    assert (after.pk, after.status, after.config) == (before.pk, Connection.Status.ACTIVE, before.config)
    assert RefreshToken.objects.get(token=before.config["refresh_token"]).revoked is None
    assert events.of(LINK_RECONNECTED) == []


def test_with_a_verifier_a_new_grant_waits_and_the_browser_goes_to_the_verifier(flow, owner_key, events):
    _verify(flow)

    answer = _callback(consent(_authorize(flow)).headers["location"])

    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(VERIFIER_URL + "?")
    flow_id = parse_qs(urlsplit(location).query)["flow_id"][0]
    connection = Connection.objects.get(app=flow.app)
    assert connection.status == Connection.Status.PENDING_VERIFICATION
    assert events.events == []
    assert _confirm(flow, owner_key, flow_id).status_code == 200
    assert Connection.objects.get(app=flow.app).status == Connection.Status.ACTIVE
    assert events.of(LINK_CREATED) == [str(connection.pk)]


def test_with_a_verifier_another_user_discards_the_grant_and_revokes_it(flow, owner_key):
    _verify(flow)
    location = _callback(consent(_authorize(flow)).headers["location"]).headers["location"]
    flow_id = parse_qs(urlsplit(location).query)["flow_id"][0]
    refresh = Connection.objects.get(app=flow.app).config["refresh_token"]

    answer = _confirm(flow, owner_key, flow_id, user_id="mallory")

    assert answer.status_code == 422
    assert not Connection.objects.filter(app=flow.app).exists()
    assert RefreshToken.objects.get(token=refresh).revoked is not None
    assert ConnectFlow.objects.get(pk=flow_id).revoked_upstream is True


def test_with_a_verifier_a_reconnect_keeps_the_old_grant_until_confirmed(flow, owner_key, events):
    before = _link(flow)
    _verify(flow)

    location = _callback(consent(_authorize(flow)).headers["location"]).headers["location"]
    flow_id = parse_qs(urlsplit(location).query)["flow_id"][0]

    waiting = Connection.objects.get(app=flow.app)
    assert (waiting.status, waiting.config) == (Connection.Status.ACTIVE, before.config)  # still serving runs
    assert _confirm(flow, owner_key, flow_id).status_code == 200
    after = Connection.objects.get(app=flow.app)
    assert after.pk == before.pk and after.config["access_token"] != before.config["access_token"]
    assert RefreshToken.objects.get(token=before.config["refresh_token"]).revoked is not None
    assert events.of(LINK_RECONNECTED) == [str(after.pk)]


def test_with_a_verifier_a_reconnect_for_another_user_revokes_only_the_new_grant(flow, owner_key):
    before = _link(flow)
    _verify(flow)
    location = _callback(consent(_authorize(flow)).headers["location"]).headers["location"]
    flow_id = parse_qs(urlsplit(location).query)["flow_id"][0]

    assert _confirm(flow, owner_key, flow_id, user_id="mallory").status_code == 422

    after = Connection.objects.get(app=flow.app)
    assert (after.status, after.config) == (Connection.Status.ACTIVE, before.config)
    assert RefreshToken.objects.get(token=before.config["refresh_token"]).revoked is None
    new_refresh = RefreshToken.objects.exclude(token=before.config["refresh_token"]).get()
    assert new_refresh.revoked is not None
