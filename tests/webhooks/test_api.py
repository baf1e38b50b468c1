"""The webhooks management API: it works, it validates, it refuses the wrong actor."""

from __future__ import annotations

import pytest

from apps.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests import factories
from tests.management_api.conftest import client_for
from tests.webhooks.conftest import make_webhook

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:9/in"


@pytest.fixture
def owner(owner_key):
    return client_for(owner_key)


def test_create_shows_the_secret_once(owner, project):
    response = owner.post("/v1/webhooks", {"url": URL, "events": ["link.created", "link.deleted"],
                                           "description": "ours"}, format="json")

    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert data["secret"].startswith("whsec_")
    assert WebhookEndpoint.objects.get().secret == data["secret"]
    shown = owner.get(f"/v1/webhooks/{data['id']}").json()["data"]
    assert "secret" not in shown
    assert shown == {k: v for k, v in data.items() if k != "secret"}
    listed = owner.get("/v1/webhooks").json()["data"]
    assert [w["id"] for w in listed] == [data["id"]] and "secret" not in listed[0]


@pytest.mark.parametrize("body,field", [
    ({"url": URL, "events": []}, "events"),
    ({"url": URL, "events": ["link.exploded"]}, "events"),
    ({"url": URL, "events": ["*", "link.created"]}, "events"),
    ({"url": "ftp://example.com/x", "events": ["*"]}, "url"),
    ({"url": URL, "events": ["*"], "app_ids": ["not-a-uuid"]}, "app_ids"),
    ({"url": URL, "events": ["*"], "secret": "whsec_mine"}, "secret"),
])
def test_create_validates(owner, body, field):
    response = owner.post("/v1/webhooks", body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert not WebhookEndpoint.objects.exists()


def test_an_app_of_another_project_cannot_be_a_filter(owner, teammate_project):
    other = factories.make_app(teammate_project, name="Theirs")

    response = owner.post("/v1/webhooks", {"url": URL, "events": ["*"], "app_ids": [str(other.id)]}, format="json")

    assert response.status_code == 400 and "app_ids" in response.json()["error"]["details"]


def test_private_targets_are_refused_when_the_guard_is_on(owner, settings):
    settings.ALLOW_PRIVATE_NETWORK_TARGETS = False

    for url in ("https://127.0.0.1/in", "http://hooks.example.com/in"):
        response = owner.post("/v1/webhooks", {"url": url, "events": ["*"]}, format="json")
        assert response.status_code == 400, (url, response.content)
    assert not WebhookEndpoint.objects.exists()


def test_patch_changes_only_what_is_given(owner, project):
    endpoint = make_webhook(project, events=["link.created"], description="before")

    response = owner.patch(f"/v1/webhooks/{endpoint.id}", {"events": ["*"], "enabled": False}, format="json")

    assert response.status_code == 200, response.content
    endpoint.refresh_from_db()
    assert (endpoint.events, endpoint.enabled, endpoint.description) == (["*"], False, "before")


def test_patch_cannot_set_the_secret(owner, project):
    endpoint = make_webhook(project)

    response = owner.patch(f"/v1/webhooks/{endpoint.id}", {"secret": "whsec_AAAA"}, format="json")

    assert response.status_code == 400


def test_delete_removes_the_webhook_and_its_deliveries(owner, project):
    endpoint = make_webhook(project)
    WebhookDelivery.objects.create(endpoint=endpoint, event_id="evt_1", event_type="link.created", body="{}")

    assert owner.delete(f"/v1/webhooks/{endpoint.id}").status_code == 204
    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()


def test_rotate_secret_answers_a_new_one(owner, project):
    endpoint = make_webhook(project)

    response = owner.post(f"/v1/webhooks/{endpoint.id}/rotate_secret")

    assert response.status_code == 200
    secret = response.json()["data"]["secret"]
    assert secret.startswith("whsec_") and secret != endpoint.secret
    endpoint.refresh_from_db()
    assert endpoint.secret == secret


def test_deliveries_list_filters_by_status(owner, project):
    endpoint = make_webhook(project)
    for status in ("delivered", "dead", "dead"):
        WebhookDelivery.objects.create(endpoint=endpoint, event_id=f"evt_{status}", event_type="link.created",
                                       body='{"type":"link.created"}', status=status)

    dead = owner.get(f"/v1/webhooks/{endpoint.id}/deliveries", {"status": "dead"}).json()
    everything = owner.get(f"/v1/webhooks/{endpoint.id}/deliveries").json()
    invalid = owner.get(f"/v1/webhooks/{endpoint.id}/deliveries", {"status": "lost"})

    assert [d["status"] for d in dead["data"]] == ["dead", "dead"]
    assert everything["pagination"]["total_count"] == 3
    assert dead["data"][0]["payload"] == {"type": "link.created"}
    assert invalid.status_code == 400


def test_test_and_redeliver_are_refused_for_a_disabled_webhook(owner, project):
    endpoint = make_webhook(project, enabled=False)
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_id="evt_1", event_type="link.created", body="{}")

    tested = owner.post(f"/v1/webhooks/{endpoint.id}/test")
    redelivered = owner.post(f"/v1/webhook_deliveries/{delivery.id}/redeliver")

    assert (tested.status_code, redelivered.status_code) == (409, 409)
    assert tested.json()["error"]["code"] == "webhook_disabled"
    assert WebhookDelivery.objects.count() == 1


def test_an_org_wide_key_must_name_the_project(org_key, project):
    org = client_for(org_key)

    missing = org.post("/v1/webhooks", {"url": URL, "events": ["*"]}, format="json")
    named = org.post("/v1/webhooks", {"url": URL, "events": ["*"], "project_id": str(project.id)}, format="json")

    assert missing.status_code == 400 and named.status_code == 201


def test_every_webhook_endpoint_refuses_the_wrong_method(owner, project):
    endpoint = make_webhook(project)

    assert owner.put(f"/v1/webhooks/{endpoint.id}", {}, format="json").status_code == 405
    assert owner.get(f"/v1/webhooks/{endpoint.id}/test").status_code == 405
    assert owner.delete(f"/v1/webhooks/{endpoint.id}/deliveries").status_code == 405


def test_the_secret_is_a_tracked_canary_and_only_its_own_field_is_exempt(owner, project):
    from tests.support import canary

    if not canary._enabled():
        pytest.skip("RCP_CANARY=0")
    created = owner.post("/v1/webhooks", {"url": URL, "events": ["*"]}, format="json").json()["data"]

    assert created["secret"] in canary.SCANNER.secrets
    assert canary._without_webhook_secret(b'{"data": {"secret": "x", "url": "y"}}') == '{"data": {"url": "y"}}'
    with canary.captured_hits() as hits:
        canary.scan_text(f'{{"description": "{created["secret"]}"}}', "probe")
    assert len(hits) == 1
