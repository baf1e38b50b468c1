"""Callback signatures, checked by the `standardwebhooks` library (an independent verifier), end to end.

The receiver verifies each delivery with `Webhook(secret).verify(body, headers)`; the negative cases show
that the verifier is really checking (a tampered body, another App's secret, a replayed old timestamp).
"""

from __future__ import annotations

import pytest

from apps.runs.models import CallbackDelivery
from tests.runs.conftest import _sqlite_template, actors, make_http_app, shared_db, thread_executor, wait_for  # noqa: F401  (fixtures)
from tests.runs.test_callbacks import invoke_async
from tests.support.http_stub import HttpStub, RecordedRequest
from tests.support.webhooks import VerifyingReceiver, WebhookVerificationError, verify


@pytest.fixture
def delivered(api_client, actors, thread_executor, upstream):  # noqa: F811  (fixtures imported above)
    """One async run with two callbacks, both received by a verifying loopback receiver."""
    app = make_http_app(actors["project"], f"{upstream.url}/cb")
    other_app = make_http_app(actors["project"], f"{upstream.url}/cb", name="Other bot")
    receiver = VerifyingReceiver(app.callback_signing_secret)
    with HttpStub(receiver) as hook:
        response = invoke_async(api_client, app, actors["owner_key"], [
            {"url": f"{hook.url}/a", "metadata": {"n": 1}}, {"url": f"{hook.url}/b", "metadata": {"n": 2}},
        ])
        assert response.status_code == 202, response.content
        wait_for(lambda: CallbackDelivery.objects.filter(status="delivered").count() == 2, timeout=20,
                 message="two deliveries")
    return app, other_app, receiver, hook.requests


def test_every_delivery_verifies_with_the_standardwebhooks_library(delivered):
    app, _, receiver, requests = delivered

    assert receiver.failures == []
    assert sorted(body["metadata"]["n"] for body in receiver.verified) == [1, 2]
    assert len({r.headers["webhook-id"] for r in requests}) == 2


def test_the_library_rejects_a_tampered_body_another_apps_secret_and_an_old_timestamp(delivered):
    app, other_app, _, requests = delivered
    genuine = requests[0]

    def altered(**changes) -> RecordedRequest:
        return RecordedRequest(**{**genuine.__dict__, **changes})

    with pytest.raises(WebhookVerificationError):
        verify(app.callback_signing_secret, altered(body=genuine.body.replace(b'"n":', b'"N":')))
    with pytest.raises(WebhookVerificationError):
        verify(other_app.callback_signing_secret, genuine)
    with pytest.raises(WebhookVerificationError):
        old = dict(genuine.headers, **{"webhook-timestamp": str(int(genuine.headers["webhook-timestamp"]) - 3600)})
        verify(app.callback_signing_secret, altered(headers=old))
