"""`link.created` when an end user's OAuth2 flow completes (real provider on loopback, as tests/connect)."""

from __future__ import annotations

import httpx
import pytest

from apps.webhooks.models import WebhookDelivery
from tests.connect.provider_flow import consent
from tests.connect.test_oauth_flow import _authorize_via_api, flow, platform, provider_base  # noqa: F401  (fixtures)
from tests.webhooks.conftest import make_webhook, types

pytestmark = pytest.mark.django_db(transaction=True)


def test_completing_the_oauth_flow_sends_link_created_once(flow, thread_executor, settings):  # noqa: F811
    settings.CALLBACK_MAX_ATTEMPTS = 1  # the closed port settles the delivery at once
    hook = make_webhook(flow.project)

    url = _authorize_via_api(flow)
    assert types(hook) == []  # an incomplete connection is not a link yet
    with httpx.Client(follow_redirects=False, trust_env=False) as browser:
        assert browser.get(consent(url).headers["location"]).status_code == 200
    # Authorizing again (the user re-consents) replaces the tokens of the same link: a reconnect in place
    # (SPEC 13), never a second link.created.
    with httpx.Client(follow_redirects=False, trust_env=False) as browser:
        assert browser.get(consent(_authorize_via_api(flow)).headers["location"]).status_code == 200

    assert types(hook) == ["link.created", "link.reconnected"]
    assert WebhookDelivery.objects.get(event_type="link.created").body.count(str(flow.crm.id)) == 1
