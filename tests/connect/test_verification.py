"""User verification (SPEC §13): with `connect_verifier_url`, a completed connection waits for the App's backend
to confirm who completed it, through `POST /v1/connect/flows/{flow_id}/confirm` on the App host.

API-key links through the connect API and the hosted page; the OAuth2 cases (a real provider) are in
test_reconnect_oauth.py; the browser following the redirect in test_browser_lifecycle.py.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from apps.connect.models import ConnectFlow, EndUserLink
from apps.connect.verification import flows_sweep
from apps.connections.models import Connection
from apps.connections.signals import LINK_CREATED, LINK_RECONNECTED
from apps.scheduler.registry import BY_NAME
from tests import factories
from tests.connect.conftest import bearer, connect_token
from tests.connect.lifecycle_support import VERIFIER_URL, one_key_app

pytestmark = pytest.mark.django_db

OLD_KEY = factories.CANARIES["user42_api_key"]
NEW_KEY = factories.CANARIES["user43_api_key"]
ALICE = "alice"


@pytest.fixture
def world(project, upstream):
    return one_key_app(project, upstream_url=upstream.url, verifier_url=VERIFIER_URL)


def _submit(api_client, world, key=NEW_KEY, user_id=ALICE):
    return api_client.post(f"/v1/connect/requirements/{world.requirement.id}/credentials",
                           {"type": "http_api_key", "config": {"url": world.upstream_url, "api_key": key}},
                           format="json", **bearer(connect_token(world.app, user_id)))


def _confirm(api_client, world, flow_id, user_id=ALICE, key=None, app=None):
    app = app or world.app
    return api_client.post(f"/apps/{app.id}/v1/connect/flows/{flow_id}/confirm", {"user_id": user_id}, format="json",
                           HTTP_AUTHORIZATION=f"Bearer {key}")


def _run(api_client, world, key, user_id=ALICE):
    return api_client.post(f"/apps/{world.app.id}/v1/runs", {"input": {"question": "q"}, "user_id": user_id},
                           format="json", HTTP_AUTHORIZATION=f"Bearer {key}")


def test_a_link_waits_for_verification_and_runs_do_not_use_it(api_client, world, owner_key, upstream, events):
    answer = _submit(api_client, world)

    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert body["message"] == "pending_verification"
    assert parse_qs(urlsplit(body["verify_url"]).query) == {"flow_id": [body["flow_id"]]}
    assert body["verify_url"].startswith(VERIFIER_URL + "?")
    assert Connection.objects.get(app=world.app).status == Connection.Status.PENDING_VERIFICATION
    status = api_client.get(f"/apps/{world.app.id}/v1/requirements/status", {"user_id": ALICE},
                            HTTP_AUTHORIZATION=f"Bearer {owner_key}").json()
    assert status["status"] == "incomplete"
    run = _run(api_client, world, owner_key)
    assert run.status_code == 409 and run.json()["error"]["code"] == "requirements_unsatisfied"
    assert upstream.requests == []
    assert events.events == []  # not announced before the App confirms


def test_confirming_activates_the_link_and_announces_it(api_client, world, owner_key, upstream, events):
    flow_id = _submit(api_client, world).json()["flow_id"]

    answer = _confirm(api_client, world, flow_id, key=owner_key)

    assert answer.status_code == 200, answer.content
    assert answer.json() == {"message": "confirmed"}
    connection = Connection.objects.get(app=world.app)
    assert connection.status == Connection.Status.ACTIVE
    assert events.of(LINK_CREATED) == [str(connection.id)]
    assert _run(api_client, world, owner_key).status_code == 200
    assert upstream.requests[-1].headers["Authorization"] == f"Bearer {NEW_KEY}"
    flow = ConnectFlow.objects.get(pk=flow_id)
    assert (flow.status, flow.outcome, flow.pending_config) == ("confirmed", "confirmed", None)


def test_confirming_again_with_the_same_user_answers_the_same(api_client, world, owner_key, events):
    flow_id = _submit(api_client, world).json()["flow_id"]
    _confirm(api_client, world, flow_id, key=owner_key)

    again = _confirm(api_client, world, flow_id, key=owner_key)

    assert again.status_code == 200
    assert len(events.of(LINK_CREATED)) == 1


def test_another_user_id_discards_the_link(api_client, world, owner_key, events):
    flow_id = _submit(api_client, world).json()["flow_id"]

    answer = _confirm(api_client, world, flow_id, user_id="mallory", key=owner_key)

    assert answer.status_code == 422, answer.content
    assert answer.json()["error"]["code"] == "user_mismatch"
    assert not Connection.objects.filter(app=world.app).exists()
    assert not EndUserLink.objects.filter(app=world.app).exists()
    flow = ConnectFlow.objects.get(pk=flow_id)
    assert (flow.status, flow.outcome) == ("discarded", "user_mismatch")
    assert events.events == []
    # Discarded for good: the right user cannot confirm it afterwards.
    late = _confirm(api_client, world, flow_id, key=owner_key)
    assert late.status_code == 409 and late.json()["error"]["details"] == {"outcome": "user_mismatch"}


def test_an_unconfirmed_flow_is_discarded_by_the_sweep(api_client, world, owner_key):
    flow_id = _submit(api_client, world).json()["flow_id"]
    ConnectFlow.objects.filter(pk=flow_id).update(expires_at=timezone.now() - timedelta(seconds=1))

    result = flows_sweep()

    assert result["discarded"] == 1
    assert not Connection.objects.filter(app=world.app).exists()
    assert ConnectFlow.objects.get(pk=flow_id).outcome == "expired"
    late = _confirm(api_client, world, flow_id, key=owner_key)
    assert late.status_code == 409


def test_the_sweep_is_a_registered_job():
    assert BY_NAME["connect.verification_sweep"].resolve() is flows_sweep


def test_a_confirm_after_the_deadline_discards_it_at_once(api_client, world, owner_key):
    flow_id = _submit(api_client, world).json()["flow_id"]
    ConnectFlow.objects.filter(pk=flow_id).update(expires_at=timezone.now() - timedelta(seconds=1))

    answer = _confirm(api_client, world, flow_id, key=owner_key)

    assert answer.status_code == 409 and answer.json()["error"]["details"] == {"outcome": "expired"}
    assert not Connection.objects.filter(app=world.app).exists()


def test_the_sweep_leaves_flows_within_their_time(api_client, world):
    _submit(api_client, world)

    assert flows_sweep()["discarded"] == 0
    assert Connection.objects.get(app=world.app).status == Connection.Status.PENDING_VERIFICATION


def test_a_reconnect_keeps_the_old_credentials_until_confirmed(api_client, world, owner_key, upstream, events):
    link = factories.link_end_user(world.app, world.requirement, ALICE,
                                   {"url": world.upstream_url, "api_key": OLD_KEY})

    answer = _submit(api_client, world, key=NEW_KEY)

    assert answer.status_code == 202
    assert _run(api_client, world, owner_key).status_code == 200
    assert upstream.requests[-1].headers["Authorization"] == f"Bearer {OLD_KEY}"
    assert _confirm(api_client, world, answer.json()["flow_id"], key=owner_key).status_code == 200
    assert _run(api_client, world, owner_key).status_code == 200
    assert upstream.requests[-1].headers["Authorization"] == f"Bearer {NEW_KEY}"
    assert Connection.objects.get(app=world.app).pk == link.connection_id
    assert events.of(LINK_RECONNECTED) == [str(link.connection_id)]


def test_a_reconnect_confirmed_for_another_user_keeps_the_old_credentials(api_client, world, owner_key, upstream):
    factories.link_end_user(world.app, world.requirement, ALICE, {"url": world.upstream_url, "api_key": OLD_KEY})
    flow_id = _submit(api_client, world, key=NEW_KEY).json()["flow_id"]

    assert _confirm(api_client, world, flow_id, user_id="mallory", key=owner_key).status_code == 422

    connection = Connection.objects.get(app=world.app)
    assert (connection.status, connection.config["api_key"]) == (Connection.Status.ACTIVE, OLD_KEY)
    assert ConnectFlow.objects.get(pk=flow_id).pending_config is None  # the new secret is not kept


def test_submitting_again_supersedes_the_pending_flow(api_client, world, owner_key):
    first = _submit(api_client, world, key=OLD_KEY).json()["flow_id"]
    second = _submit(api_client, world, key=NEW_KEY).json()["flow_id"]

    assert _confirm(api_client, world, first, key=owner_key).status_code == 409
    assert _confirm(api_client, world, second, key=owner_key).status_code == 200
    assert Connection.objects.get(app=world.app).config["api_key"] == NEW_KEY


def test_another_apps_flow_is_not_found(api_client, project, world, owner_key, upstream):
    other = one_key_app(project, upstream_url=upstream.url, verifier_url=VERIFIER_URL, name="Other bot")
    flow_id = _submit(api_client, world).json()["flow_id"]

    answer = _confirm(api_client, world, flow_id, key=owner_key, app=other.app)

    assert answer.status_code == 404
    assert Connection.objects.get(app=world.app).status == Connection.Status.PENDING_VERIFICATION


@pytest.mark.parametrize("flow_id", ["not-a-uuid", "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a"])
def test_an_unknown_flow_is_not_found(api_client, world, owner_key, flow_id):
    assert _confirm(api_client, world, flow_id, key=owner_key).status_code == 404


def test_confirm_validates_its_body(api_client, world, owner_key):
    flow_id = _submit(api_client, world).json()["flow_id"]
    url = f"/apps/{world.app.id}/v1/connect/flows/{flow_id}/confirm"
    auth = {"HTTP_AUTHORIZATION": f"Bearer {owner_key}"}

    assert api_client.post(url, {}, format="json", **auth).status_code == 400
    assert api_client.post(url, {"user_id": 42}, format="json", **auth).status_code == 400
    assert api_client.post(url, {"user_id": ALICE, "extra": 1}, format="json", **auth).status_code == 400
    assert api_client.get(url, **auth).status_code == 405
    assert api_client.post(url, {"user_id": ALICE}, format="json").status_code == 401
    assert Connection.objects.get(app=world.app).status == Connection.Status.PENDING_VERIFICATION


def test_without_a_verifier_a_link_is_active_at_once(api_client, project, upstream):
    plain = one_key_app(project, upstream_url=upstream.url, name="Plain bot")

    answer = _submit(api_client, plain)

    assert answer.status_code == 201 and answer.json() == {"message": "created"}
    assert Connection.objects.get(app=plain.app).status == Connection.Status.ACTIVE
    assert not ConnectFlow.objects.exists()


def test_the_hosted_page_sends_the_browser_to_the_verifier(world):
    browser = Client()
    browser.get("/connect", {"token": connect_token(world.app, ALICE)})
    page = browser.get("/connect")
    assert "https://app.example.com" in page["Content-Security-Policy"]  # form-action: the redirect after submit

    answer = browser.post(f"/connect/requirements/{world.requirement.id}/credentials",
                          {"f-url": world.upstream_url, "f-api_key": NEW_KEY, "f-header": "Authorization",
                           "f-prefix": "Bearer "})

    assert answer.status_code == 302, answer.content
    flow = ConnectFlow.objects.get()
    assert answer["Location"] == f"{VERIFIER_URL}?flow_id={flow.pk}"
    assert flow.kind == ConnectFlow.Kind.LINK and flow.user_id == ALICE
    assert "Waiting for Invoice bot to confirm" in browser.get("/connect").content.decode()


def test_the_verifier_url_keeps_its_own_query(api_client, world):
    world.app.connect_verifier_url = VERIFIER_URL + "?tenant=7&flow_id=forged"
    world.app.save(update_fields=["connect_verifier_url"])

    verify_url = _submit(api_client, world).json()["verify_url"]

    assert parse_qs(urlsplit(verify_url).query) == {"tenant": ["7"], "flow_id": [str(ConnectFlow.objects.get().pk)]}


@pytest.mark.parametrize("url,ok", [
    ("https://app.example.com/verify", True),
    ("", True),
    ("http://app.example.com/verify", False),
    ("https://user:pw@app.example.com/verify", False),
    ("https://app.example.com/verify#frag", False),
    ("javascript:alert(1)", False),
    ("/relative", False),
])
def test_the_management_api_validates_the_verifier_url(api_client, world, owner_key, settings, url, ok):
    settings.ALLOW_PRIVATE_NETWORK_TARGETS = False
    answer = api_client.patch(f"/v1/apps/{world.app.id}", {"connect_verifier_url": url}, format="json",
                              HTTP_AUTHORIZATION=f"Bearer {owner_key}")

    assert answer.status_code == (200 if ok else 400), answer.content
    if ok:
        assert answer.json()["data"]["connect_verifier_url"] == url


def test_http_verifier_urls_are_allowed_with_private_targets(api_client, world, owner_key, settings):
    settings.ALLOW_PRIVATE_NETWORK_TARGETS = True
    answer = api_client.patch(f"/v1/apps/{world.app.id}", {"connect_verifier_url": "http://localhost:3000/v"},
                              format="json", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert answer.status_code == 200


def test_a_confirmed_reconnect_records_the_new_credentials_account(api_client, project, billing, owner_key):
    # SPEC 13 account identity: the link shows whose credentials serve it. A reconnect waiting for the App's
    # confirmation must carry the new credentials' account (and verification time) into the swap, or the link
    # keeps naming the old account while the new one serves runs.
    from tests.connect.link_fields_support import GOOD_KEY, VERIFY, _world

    app, requirement = _world(project, billing.url, verify=VERIFY)
    app.connect_verifier_url = VERIFIER_URL
    app.save(update_fields=["connect_verifier_url"])
    link = factories.link_end_user(app, requirement, ALICE, {"url": billing.url, "header": "X-Api-Key", "prefix": "",
                                                             "api_key": OLD_KEY})
    Connection.objects.filter(pk=link.connection_id).update(account={"id": "acct_old", "label": "old@example.com"})
    world = type("World", (), {"app": app})

    answer = api_client.post(f"/v1/connect/requirements/{requirement.id}/credentials",
                             {"type": "http_api_key", "config": {"api_key": GOOD_KEY}}, format="json",
                             **bearer(connect_token(app, ALICE)))
    assert answer.status_code == 202, answer.content
    assert Connection.objects.get(pk=link.connection_id).account["id"] == "acct_old"  # unchanged until confirmed
    assert _confirm(api_client, world, answer.json()["flow_id"], key=owner_key).status_code == 200

    connection = Connection.objects.get(pk=link.connection_id)
    assert connection.config["api_key"] == GOOD_KEY
    assert connection.account == {"id": "acct_1042", "label": "ada@example.com"}
    assert connection.last_verified_at is not None
