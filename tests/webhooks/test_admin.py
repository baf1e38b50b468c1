"""The webhook admin: deliveries are read-only, the redeliver action queues the same event again."""

from __future__ import annotations

import pytest

from apps.webhooks.models import WebhookDelivery
from tests.support.admin import changelist_action, operator, operator_client, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def test_the_redeliver_action_makes_a_new_delivery_of_the_same_event(operator_client, world):  # noqa: F811
    first = WebhookDelivery.objects.get()
    url = "/admin/webhooks/webhookdelivery/"

    asked = changelist_action(operator_client, url, "redeliver", [first.pk])
    confirmed = changelist_action(operator_client, url, "redeliver", [first.pk], post="yes")

    assert asked.status_code == 200 and b"Redeliver webhook events" in asked.content
    assert confirmed.status_code == 302
    again = WebhookDelivery.objects.exclude(pk=first.pk).get()
    assert (again.event_id, again.body, again.redelivery_of_id, again.status) == (first.event_id, first.body, first.pk,
                                                                                 "pending")
