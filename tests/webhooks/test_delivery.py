"""Deliveries to a real loopback receiver that verifies every one with the `standardwebhooks` library (an
independent verifier), through the thread executor on a committed database."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from apps.connect.models import EndUserLink
from apps.connect.services import link_revoke
from apps.webhooks.jobs import retry_sweep
from apps.webhooks.models import WebhookDelivery
from tests import factories
from tests.runs.conftest import wait_for
from tests.runs.test_callbacks import FlakyReceiver
from tests.support.endless import TOTAL, endless_answer
from tests.support.http_stub import HttpStub, StubResponse
from tests.support.webhooks import VerifyingReceiver, verify
from tests.webhooks.conftest import ALICE, ALICE_KEY, build_connect_setup, link_via_api, make_webhook, unlink_via_api


@pytest.fixture
def world(shared_db):
    project = factories.make_project("Acme", "Billing")
    return project, build_connect_setup(project), factories.make_key(project, name="owner")


def _owner(key):
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def test_a_receiver_failing_three_times_gets_the_same_signed_event_four_times(api_client, world, thread_executor,
                                                                               settings):
    settings.CALLBACK_RETRY_BASE_SECONDS = 0.05
    project, setup, _ = world
    flaky = FlakyReceiver(3)
    with HttpStub(lambda request: verifier(request)) as hook:
        endpoint = make_webhook(project, f"{hook.url}/in", events=["link.created"])
        verifier = VerifyingReceiver(endpoint.secret, flaky)
        assert link_via_api(api_client, setup).status_code in (200, 201)
        delivery = wait_for(lambda: WebhookDelivery.objects.filter(status="delivered").first(), timeout=20,
                            message="delivered")
    requests = hook.requests
    assert len(requests) == 4 and verifier.failures == [] and len(verifier.verified) == 4
    assert {r.headers["webhook-id"] for r in requests} == {delivery.event_id}
    assert len({r.body for r in requests}) == 1
    assert verify(endpoint.secret, requests[0])["type"] == "link.created"
    assert (delivery.attempts, delivery.last_status_code, delivery.delivered_at is not None) == (4, 200, True)


def test_a_receiver_that_refuses_makes_the_delivery_dead_at_once(world, thread_executor):
    project, setup, _ = world
    with HttpStub(lambda request: StubResponse(410, {"error": "gone"})) as hook:
        make_webhook(project, f"{hook.url}/in")
        link = factories.link_end_user(setup.app, setup.billing, ALICE, {"url": "https://billing.example.com",
                                                                         "api_key": ALICE_KEY})
        link_revoke(link=link)
        wait_for(lambda: WebhookDelivery.objects.filter(status="dead").count() == 2, timeout=20, message="dead")
    assert len(hook.requests) == 2
    assert set(WebhookDelivery.objects.values_list("last_status_code", "attempts")) == {(410, 1)}


def test_redeliver_sends_the_same_event_again(api_client, world, thread_executor):
    project, setup, key = world
    with HttpStub(lambda request: verifier(request)) as hook:
        endpoint = make_webhook(project, f"{hook.url}/in", events=["link.created"])
        verifier = VerifyingReceiver(endpoint.secret)
        link_via_api(api_client, setup)
        first = wait_for(lambda: WebhookDelivery.objects.filter(status="delivered").first(), timeout=20,
                         message="first delivery")

        response = api_client.post(f"/v1/webhook_deliveries/{first.id}/redeliver", **_owner(key))

        assert response.status_code == 201, response.content
        again = response.json()["data"]
        assert (again["event_id"], again["redelivery_of"], again["status"]) == (first.event_id, str(first.id), "pending")
        wait_for(lambda: WebhookDelivery.objects.filter(status="delivered").count() == 2, timeout=20,
                 message="redelivery")
    assert [r.headers["webhook-id"] for r in hook.requests] == [first.event_id] * 2
    assert hook.requests[0].body == hook.requests[1].body and len(verifier.verified) == 2


def test_the_test_event_reaches_the_receiver_signed(api_client, world, thread_executor):
    project, _, key = world
    with HttpStub(lambda request: verifier(request)) as hook:
        endpoint = make_webhook(project, f"{hook.url}/in", events=["link.deleted"])
        verifier = VerifyingReceiver(endpoint.secret)

        response = api_client.post(f"/v1/webhooks/{endpoint.id}/test", **_owner(key))

        assert response.status_code == 201, response.content
        wait_for(lambda: verifier.verified, timeout=20, message="test event")
    [event] = verifier.verified
    assert event["type"] == "webhook.test" and event["data"]["webhook_id"] == str(endpoint.id)


def test_a_rotated_secret_signs_the_next_deliveries(api_client, world, thread_executor):
    project, _, key = world
    with HttpStub(lambda request: verifier(request)) as hook:
        endpoint = make_webhook(project, f"{hook.url}/in")
        rotated = api_client.post(f"/v1/webhooks/{endpoint.id}/rotate_secret", **_owner(key)).json()["data"]["secret"]
        verifier = VerifyingReceiver(rotated)
        api_client.post(f"/v1/webhooks/{endpoint.id}/test", **_owner(key))
        wait_for(lambda: verifier.verified or verifier.failures, timeout=20, message="test event")
    assert rotated != endpoint.secret and verifier.failures == [] and len(verifier.verified) == 1


def test_the_sweep_queues_an_owed_delivery_again(world, thread_executor, settings):
    settings.WEBHOOK_RETRY_SWEEP_SECONDS = 60
    project, setup, _ = world
    with HttpStub(lambda request: StubResponse(200, {})) as hook:
        endpoint = make_webhook(project, f"{hook.url}/in")
        # What a process that died before its timer fired leaves behind: owed, due long ago.
        lost = WebhookDelivery.objects.create(endpoint=endpoint, event_id="evt_lost", event_type="link.created",
                                              body='{"type":"link.created"}', status="retrying", attempts=1,
                                              next_attempt_at=timezone.now() - timedelta(minutes=5))
        recent = WebhookDelivery.objects.create(endpoint=endpoint, event_id="evt_recent", event_type="link.created",
                                                body='{"type":"link.created"}', status="retrying", attempts=1,
                                                next_attempt_at=timezone.now() + timedelta(minutes=5))

        assert retry_sweep() == {"webhooks": 1}
        wait_for(lambda: WebhookDelivery.objects.get(pk=lost.pk).status == "delivered", timeout=20, message="swept")
    assert [r.headers["webhook-id"] for r in hook.requests] == ["evt_lost"]
    assert WebhookDelivery.objects.get(pk=recent.pk).status == "retrying"


def test_two_concurrent_unlinks_send_one_link_deleted(world, thread_executor, settings):
    settings.CALLBACK_MAX_ATTEMPTS = 1  # the delivery to the closed port settles at once, within the test
    project, setup, _ = world
    endpoint = make_webhook(project, events=["link.deleted"])
    link = factories.link_end_user(setup.app, setup.billing, ALICE, {"url": "https://billing.example.com",
                                                                     "api_key": ALICE_KEY})
    barrier = threading.Barrier(2)
    errors = []

    def unlink():
        try:
            mine = EndUserLink.objects.select_related("connection").get(pk=link.pk)
            barrier.wait(timeout=10)
            link_revoke(link=mine)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=unlink) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert not EndUserLink.objects.exists()
    assert WebhookDelivery.objects.filter(endpoint=endpoint, event_type="link.deleted").count() == 1


def test_unlinking_through_the_connect_api_delivers_link_deleted_and_requirement_unsatisfied(api_client, world,
                                                                                              thread_executor):
    project, setup, _ = world
    with HttpStub(lambda request: verifier(request)) as hook:
        endpoint = make_webhook(project, f"{hook.url}/in", events=["link.deleted", "requirement.unsatisfied"])
        verifier = VerifyingReceiver(endpoint.secret)
        link_via_api(api_client, setup)
        assert unlink_via_api(api_client, setup).status_code == 200
        wait_for(lambda: len(verifier.verified) == 2, timeout=20, message="two events")
    assert sorted(event["type"] for event in verifier.verified) == ["link.deleted", "requirement.unsatisfied"]
    assert len(hook.requests) == 2


def test_a_receiver_answering_an_endless_body_is_not_read(settings):
    # The receiver's answer body means nothing to a delivery (the status decides), and a receiver is any public
    # URL a tenant names: reading its body whole let one answering gigabytes fill a worker's memory. The attempt
    # reads the status line and headers and hangs up; the receiver's writes fail long before the end.
    from apps.runs import delivery as signed
    from apps.webhooks.services import new_secret

    with endless_answer() as (url, written):
        outcome = signed.post_signed(url=f"{url}/in", secret=new_secret(), message_id="evt_1", body=b"{}", attempt=1,
                                     user_agent="test")
        assert written["done"].wait(30)
    assert (outcome.status, outcome.status_code) == ("delivered", 200)
    assert written["bytes"] < TOTAL
