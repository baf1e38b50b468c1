"""Which events a change produces, and what they carry: written as deliveries inside the change's transaction
(no executor here: on_commit never fires in these tests, so the rows are what the receiver wrote)."""

from __future__ import annotations

import pytest
from django.db import transaction

from apps.connect.models import EndUserLink
from apps.connect.services import link_revoke
from apps.connections import signals
from apps.connections.models import Connection
from apps.webhooks.models import WebhookDelivery
from tests import factories
from tests.conftest import assert_no_canary
from tests.webhooks.conftest import ALICE, ALICE_KEY, link_via_api, make_webhook, payloads, types, unlink_via_api

pytestmark = pytest.mark.django_db


def test_linking_through_the_connect_api_sends_link_created(api_client, setup, project):
    hook = make_webhook(project)

    response = link_via_api(api_client, setup)

    assert response.status_code in (200, 201), response.content
    link = EndUserLink.objects.get(user_id=ALICE)
    [event] = payloads(hook)
    assert event["type"] == "link.created" and event["id"].startswith("evt_") and event["timestamp"].endswith("Z")
    assert event["data"] == {
        "app_id": str(setup.app.id), "user_id": ALICE,
        "requirement": {"id": str(setup.billing.id), "name": "billing", "title": setup.billing.title},
        "connection_id": str(link.connection_id), "status": "active", "status_reason": None, "account": None,
    }


def test_replacing_the_credentials_of_a_link_is_not_a_new_link(api_client, setup, project):
    hook = make_webhook(project)
    link_via_api(api_client, setup)

    link_via_api(api_client, setup, api_key="canary-webhook-alice-key-new-77")

    # New credentials for a live link are a reconnect in place (SPEC 13): announced as such, never as a new link.
    assert types(hook) == ["link.created", "link.reconnected"]


def test_unlinking_sends_link_deleted_and_requirement_unsatisfied(api_client, setup, project):
    hook = make_webhook(project)
    link_via_api(api_client, setup)
    connection_id = str(EndUserLink.objects.get().connection_id)

    response = unlink_via_api(api_client, setup)

    assert response.status_code == 200, response.content
    deleted, unsatisfied = payloads(hook)[1:]
    assert deleted["type"] == "link.deleted" and deleted["data"]["connection_id"] == connection_id
    assert "connect_url" not in deleted["data"]
    assert unsatisfied["type"] == "requirement.unsatisfied" and unsatisfied["data"]["cause"] == "link.deleted"
    assert unsatisfied["data"]["requirement"]["id"] == str(setup.billing.id)
    assert unsatisfied["data"]["connect_url"].startswith("http") and "/connect?token=" in unsatisfied["data"]["connect_url"]
    assert deleted["id"] != unsatisfied["id"]


def test_removing_a_link_through_the_management_api_sends_link_deleted(api_client, setup, project, owner_key):
    hook = make_webhook(project, events=["link.deleted"])
    link = factories.link_end_user(setup.app, setup.billing, ALICE, {"url": "https://billing.example.com",
                                                                     "api_key": ALICE_KEY})

    response = api_client.delete(f"/v1/apps/{setup.app.id}/links/{link.id}", HTTP_AUTHORIZATION=f"Bearer {owner_key}")

    assert response.status_code == 204
    assert types(hook) == ["link.deleted"]


def test_a_second_unlink_of_the_same_link_sends_nothing(setup, project):
    hook = make_webhook(project)
    link = factories.link_end_user(setup.app, setup.billing, ALICE, {"url": "https://billing.example.com",
                                                                     "api_key": ALICE_KEY})
    stale = EndUserLink.objects.select_related("connection").get(pk=link.pk)

    link_revoke(link=link)
    link_revoke(link=stale)  # what a concurrent unlink that lost the race holds

    assert types(hook) == ["link.deleted", "requirement.unsatisfied"]


def test_an_unlink_of_a_link_that_no_longer_counted_sends_no_requirement_unsatisfied(setup, project):
    hook = make_webhook(project)
    link = factories.link_end_user(setup.app, setup.billing, ALICE, {"url": "https://billing.example.com",
                                                                     "api_key": ALICE_KEY},
                                   status=Connection.Status.EXPIRED)

    link_revoke(link=link)

    assert types(hook) == ["link.deleted"]


def test_an_endpoint_gets_only_the_event_types_it_subscribed_to(api_client, setup, project):
    created_only = make_webhook(project, events=["link.created"])
    unsatisfied_only = make_webhook(project, events=["requirement.unsatisfied"])

    link_via_api(api_client, setup)
    unlink_via_api(api_client, setup)

    assert types(created_only) == ["link.created"]
    assert types(unsatisfied_only) == ["requirement.unsatisfied"]


def test_an_endpoint_filtered_by_app_ids_gets_only_those_apps(api_client, setup, project):
    other_app = factories.make_app(project, name="Other bot")
    for_this_app = make_webhook(project, app_ids=[setup.app.id])
    for_other_app = make_webhook(project, app_ids=[other_app.id])

    link_via_api(api_client, setup)

    assert types(for_this_app) == ["link.created"]
    assert types(for_other_app) == []


def test_disabled_endpoints_and_other_projects_get_nothing(api_client, setup, project, teammate_project):
    disabled = make_webhook(project, enabled=False)
    neighbour = make_webhook(teammate_project)

    link_via_api(api_client, setup)

    assert WebhookDelivery.objects.filter(endpoint__in=[disabled, neighbour]).count() == 0


def test_one_event_to_two_endpoints_has_one_id_and_two_deliveries(api_client, setup, project):
    first, second = make_webhook(project), make_webhook(project, "http://127.0.0.1:9/other")

    link_via_api(api_client, setup)

    deliveries = list(WebhookDelivery.objects.all())
    assert len(deliveries) == 2 and {d.endpoint_id for d in deliveries} == {first.id, second.id}
    assert len({d.event_id for d in deliveries}) == 1 and len({d.body for d in deliveries}) == 1


def test_an_expired_end_user_connection_sends_the_event_and_requirement_unsatisfied_with_a_connect_url(setup, project):
    hook = make_webhook(project)
    link = factories.link_end_user(setup.app, setup.billing, ALICE, {"url": "https://billing.example.com",
                                                                     "api_key": ALICE_KEY})

    with transaction.atomic():
        Connection.objects.filter(pk=link.connection_id).update(status=Connection.Status.EXPIRED,
                                                                status_reason="invalid_grant")
        signals.emit(signals.CONNECTION_EXPIRED, connection_id=link.connection_id)

    expired, unsatisfied = payloads(hook)
    assert (expired["type"], unsatisfied["type"]) == ("connection.expired", "requirement.unsatisfied")
    for event in (expired, unsatisfied):
        assert event["data"]["status"] == "expired" and event["data"]["status_reason"] == "invalid_grant"
        assert "/connect?token=" in event["data"]["connect_url"]
    assert expired["data"]["connect_url"] != unsatisfied["data"]["connect_url"]  # a fresh link each


def test_a_refusal_then_an_expiry_announces_the_unsatisfied_requirement_once(setup, project):
    """unauthorized (a refused client) and then expired (invalid_grant, e.g. a racing run's refresh): the link
    stopped counting at the first change only (found in review: the second sent requirement.unsatisfied again)."""
    from apps.connections.oauth_flows import _set_status

    hook = make_webhook(project)
    link = factories.link_end_user(setup.app, setup.billing, ALICE, {"url": "https://billing.example.com",
                                                                     "api_key": ALICE_KEY})
    connection = Connection.objects.get(pk=link.connection_id)
    with transaction.atomic():
        assert _set_status(connection, status=Connection.Status.UNAUTHORIZED, reason="invalid_client",
                           event=signals.CONNECTION_UNAUTHORIZED)
    with transaction.atomic():
        assert _set_status(connection, status=Connection.Status.EXPIRED, reason="invalid_grant",
                           event=signals.CONNECTION_EXPIRED)

    assert types(hook) == ["connection.unauthorized", "requirement.unsatisfied", "connection.expired"]


def test_emitter_data_is_merged_but_cannot_overwrite_the_payload(setup, project):
    hook = make_webhook(project)
    link = factories.link_end_user(setup.app, setup.billing, ALICE, {"url": "https://billing.example.com",
                                                                     "api_key": ALICE_KEY})

    signals.emit(signals.CONNECTION_REFRESH_FAILED, connection_id=link.connection_id,
                 data={"attempt": 3, "status": "forged"})

    [event] = payloads(hook)
    assert event["data"]["attempt"] == 3 and event["data"]["status"] == "active"
    assert "connect_url" not in event["data"]


def test_a_shared_connection_carries_no_app_user_or_requirement(project):
    hook = make_webhook(project)
    app_filtered = make_webhook(project, app_ids=[factories.make_app(project, name="Any").id])
    shared = factories.make_connection(project)

    signals.emit(signals.CONNECTION_UNAUTHORIZED, connection_id=shared.id)

    [event] = payloads(hook)
    assert event["type"] == "connection.unauthorized"
    assert (event["data"]["app_id"], event["data"]["user_id"], event["data"]["requirement"]) == (None, None, None)
    assert "connect_url" not in event["data"]
    assert types(app_filtered) == []


def test_an_event_of_a_rolled_back_change_is_never_written(setup, project):
    make_webhook(project)
    link = factories.link_end_user(setup.app, setup.billing, ALICE, {"url": "https://billing.example.com",
                                                                     "api_key": ALICE_KEY})

    with pytest.raises(RuntimeError), transaction.atomic():
        signals.emit(signals.CONNECTION_EXPIRED, connection_id=link.connection_id)
        raise RuntimeError("the change failed")

    assert not WebhookDelivery.objects.exists()


def test_payloads_never_carry_a_secret(api_client, setup, project):
    make_webhook(project)
    link_via_api(api_client, setup, api_key=factories.CANARIES["user42_api_key"])
    unlink_via_api(api_client, setup)

    for body in WebhookDelivery.objects.values_list("body", flat=True):
        assert_no_canary(body)


def test_deleting_an_end_user_connection_through_the_management_api_sends_link_deleted(api_client, setup, project,
                                                                                         owner_key):
    # DELETE /v1/connections/{id} also removes an end user's link (the link cascades with its connection): the
    # App must hear of it as of any other unlink, with the requirement it no longer satisfies.
    hook = make_webhook(project)
    link = factories.link_end_user(setup.app, setup.billing, ALICE, {"url": "https://billing.example.com",
                                                                     "api_key": ALICE_KEY})

    response = api_client.delete(f"/v1/connections/{link.connection_id}", HTTP_AUTHORIZATION=f"Bearer {owner_key}")

    assert response.status_code == 204, response.content
    assert not EndUserLink.objects.filter(pk=link.pk).exists()
    assert types(hook) == ["link.deleted", "requirement.unsatisfied"]
    assert payloads(hook)[0]["data"]["connection_id"] == str(link.connection_id)
