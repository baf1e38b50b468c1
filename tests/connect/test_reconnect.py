"""Reconnect in place (SPEC §13) with API-key credentials: the token's flag, the connect API, the hosted page.

The load case runs against a live server: a thread keeps starting runs through the App-host run endpoint
while the end user reconnects; every run succeeds, and the upstream (a loopback stub) sees the old key, then
only the new one.
"""

from __future__ import annotations

import threading

import httpx
import pytest
from django.test import Client

from apps.connect import tokens
from apps.connect.models import EndUserLink
from apps.connections.models import Connection
from apps.connections.signals import LINK_CREATED, LINK_RECONNECTED
from tests import factories
from tests.connect.conftest import bearer, connect_token
from tests.connect.lifecycle_support import one_key_app
from tests.support.http_stub import HttpStub

OLD_KEY = factories.CANARIES["user42_api_key"]
NEW_KEY = factories.CANARIES["user43_api_key"]
ALICE = "alice"


def _link(world, key=OLD_KEY) -> EndUserLink:
    return factories.link_end_user(world.app, world.requirement, ALICE, {"url": world.upstream_url, "api_key": key})


@pytest.mark.django_db
def test_a_reconnect_token_carries_the_flag(api_client, project, owner_key, upstream):
    world = one_key_app(project, upstream_url=upstream.url)

    answer = api_client.post(f"/apps/{world.app.id}/v1/connect/tokens", {"user_id": ALICE, "reconnect": True},
                             format="json", HTTP_AUTHORIZATION=f"Bearer {owner_key}")

    assert answer.status_code == 201, answer.content
    assert tokens.decode(answer.json()["token"]).reconnect is True
    plain = api_client.post(f"/apps/{world.app.id}/v1/connect/tokens", {"user_id": ALICE}, format="json",
                            HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert tokens.decode(plain.json()["token"]).reconnect is False
    refused = api_client.post(f"/apps/{world.app.id}/v1/connect/tokens", {"user_id": ALICE, "reconnect": "maybe"},
                              format="json", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert refused.status_code == 400


@pytest.mark.django_db
def test_new_credentials_for_a_linked_requirement_keep_the_connection_id(api_client, project, upstream, events):
    world = one_key_app(project, upstream_url=upstream.url)
    link = _link(world)

    answer = api_client.post(f"/v1/connect/requirements/{world.requirement.id}/credentials",
                             {"type": "http_api_key", "config": {"url": world.upstream_url, "api_key": NEW_KEY}},
                             format="json", **bearer(connect_token(world.app, ALICE)))

    assert answer.status_code == 201
    connection = Connection.objects.get(app=world.app)
    assert (connection.pk, connection.config["api_key"]) == (link.connection_id, NEW_KEY)
    assert connection.status_reason == "Reconnected with new credentials."
    assert events.of(LINK_RECONNECTED) == [str(connection.pk)]
    assert events.of(LINK_CREATED) == []


@pytest.mark.django_db
def test_a_rejected_key_is_reconnected_in_place(api_client, project, upstream, events):
    world = one_key_app(project, upstream_url=upstream.url)
    link = _link(world)
    Connection.objects.filter(pk=link.connection_id).update(status=Connection.Status.UNAUTHORIZED)

    api_client.post(f"/v1/connect/requirements/{world.requirement.id}/credentials",
                    {"type": "http_api_key", "config": {"url": world.upstream_url, "api_key": NEW_KEY}},
                    format="json", **bearer(connect_token(world.app, ALICE)))

    assert Connection.objects.get(pk=link.connection_id).status == Connection.Status.ACTIVE
    assert events.of(LINK_RECONNECTED) == [str(link.connection_id)]


def _open_page(browser: Client, world, *, reconnect: bool) -> str:
    token, _ = tokens.mint(app_id=str(world.app.id), user_id=ALICE, reconnect=reconnect)
    assert browser.get("/connect", {"token": token}).status_code == 302
    return browser.get("/connect").content.decode()


@pytest.mark.django_db
def test_a_reconnect_page_opens_the_form_of_each_linked_requirement(project, upstream):
    world = one_key_app(project, upstream_url=upstream.url)
    _link(world)
    browser = Client()

    html = _open_page(browser, world, reconnect=True)

    assert "Reconnect your accounts" in html
    assert 'data-reconnecting="true"' in html and "Save and reconnect" in html
    assert "You&#x27;re all set" not in html and "You're all set" not in html
    submitted = browser.post(f"/connect/requirements/{world.requirement.id}/credentials",
                             {"f-url": world.upstream_url, "f-api_key": NEW_KEY, "f-header": "Authorization",
                              "f-prefix": "Bearer "})
    assert submitted.status_code == 302 and submitted["Location"] == "/connect"
    after = browser.get("/connect").content.decode()
    assert "Your billing account is connected." in after
    assert 'data-reconnecting="true"' not in after  # reconnected in this session: not offered again
    assert Connection.objects.get(app=world.app).config["api_key"] == NEW_KEY


@pytest.mark.django_db
def test_a_plain_page_offers_a_reconnect_button_that_opens_the_form(project, upstream):
    world = one_key_app(project, upstream_url=upstream.url)
    _link(world)
    browser = Client()

    html = _open_page(browser, world, reconnect=False)

    assert 'data-reconnecting="true"' not in html
    assert f'href="?reconnect={world.requirement.id}#req-{world.requirement.id}"' in html
    opened = browser.get("/connect", {"reconnect": str(world.requirement.id)}).content.decode()
    assert 'data-reconnecting="true"' in opened and "The current ones keep working" in opened


@pytest.mark.django_db(transaction=True)
def test_runs_keep_succeeding_during_a_reconnect_and_switch_to_the_new_key(live_server, settings, project, owner_key,
                                                                          events):
    settings.PLATFORM_URL = live_server.url
    with HttpStub() as upstream:
        world = one_key_app(project, upstream_url=upstream.url)
        link = _link(world)
        results: list[tuple[int, str]] = []  # (HTTP status, run status) in order
        stop = threading.Event()

        def keep_running():
            with httpx.Client(base_url=f"{live_server.url}/apps/{world.app.id}", trust_env=False, timeout=30,
                              headers={"Authorization": f"Bearer {owner_key}"}) as client:
                while not stop.is_set():
                    answer = client.post("/v1/runs", json={"input": {"question": "q"}, "user_id": ALICE})
                    results.append((answer.status_code, answer.json().get("status", "")))

        def upstream_keys() -> list[str]:
            return [r.headers.get("Authorization", "") for r in list(upstream.requests)]

        def wait_for(predicate) -> None:
            for _ in range(3000):
                if predicate():
                    return
                stop.wait(0.01)
            raise AssertionError("the runs did not get there")

        runner = threading.Thread(target=keep_running, daemon=True)
        runner.start()
        try:
            wait_for(lambda: len(upstream_keys()) >= 5)
            with httpx.Client(base_url=live_server.url, trust_env=False, timeout=30) as end_user:
                minted = httpx.post(f"{live_server.url}/apps/{world.app.id}/v1/connect/tokens",
                                    json={"user_id": ALICE, "reconnect": True},
                                    headers={"Authorization": f"Bearer {owner_key}"}, timeout=30)
                answer = end_user.post(f"/v1/connect/requirements/{world.requirement.id}/credentials",
                                       json={"type": "http_api_key",
                                             "config": {"url": world.upstream_url, "api_key": NEW_KEY}},
                                       headers={"Authorization": f"Bearer {minted.json()['token']}"})
            assert answer.status_code == 201, answer.text
            switched_at = len(upstream_keys()) + 1  # a call in flight at that moment may still carry the old key
            wait_for(lambda: len(upstream_keys()) >= switched_at + 5)
        finally:
            stop.set()
            runner.join(timeout=60)

        keys = upstream_keys()
    assert results and all(result == (200, "completed") for result in results), results
    assert set(keys[:5]) == {f"Bearer {OLD_KEY}"}
    assert set(keys[switched_at:]) == {f"Bearer {NEW_KEY}"}
    first_new = keys.index(f"Bearer {NEW_KEY}")
    assert set(keys[first_new:]) == {f"Bearer {NEW_KEY}"}  # one switch, never back
    assert Connection.objects.get(app=world.app).pk == link.connection_id
    assert events.of(LINK_RECONNECTED) == [str(link.connection_id)]
