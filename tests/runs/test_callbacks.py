"""Callbacks of async invoke: signed (Standard Webhooks), retried with growing gaps, then dead; URLs
checked at request time."""

import json
import time

import pytest

from apps.runs.models import CallbackDelivery, Run
from tests.conftest import assert_no_canary
from tests.runs.conftest import make_http_app, wait_for
from tests.support.http_stub import HttpStub, StubResponse
from tests.support.webhooks import VerifyingReceiver, verify


def invoke_async(api_client, app, key, callbacks, **extra):
    return api_client.post(f"/apps/{app.id}/", {"input": {"question": "q"}, "execution_mode": "async",
                                                "callbacks": callbacks},
                           format="json", HTTP_AUTHORIZATION=f"Bearer {key}", **extra)


class FlakyReceiver:
    """Answers `failures` times with `status`, then 200; records arrival times."""

    def __init__(self, failures: int, status: int = 503):
        self.failures, self.status, self.times = failures, status, []

    def __call__(self, request):
        self.times.append(time.monotonic())
        if len(self.times) <= self.failures:
            return StubResponse(self.status, {"error": "try later"})
        return StubResponse(200, {"ok": True})


def test_a_receiver_failing_three_times_gets_the_same_signed_body_four_times(api_client, actors, thread_executor,
                                                                             upstream, settings):
    settings.CALLBACK_RETRY_BASE_SECONDS = 0.1
    app = make_http_app(actors["project"], f"{upstream.url}/cb")
    receiver = FlakyReceiver(3)
    # Every delivery (the failed ones too) is verified by the standardwebhooks library before the receiver answers.
    verifier = VerifyingReceiver(app.callback_signing_secret, receiver)
    with HttpStub(verifier) as hook:
        response = invoke_async(api_client, app, actors["owner_key"], [
            {"url": f"{hook.url}/hook", "auth": {"type": "bearer", "token": "receiver-token-123"},
             "metadata": {"order": 17}},
        ])
        assert response.status_code == 202, response.content
        accepted = response.json()  # with the run's stream_url since SPEC.md section 12
        assert accepted == {"id": accepted["id"], "status": "accepted", "stream_url": accepted["stream_url"]}
        assert f"/v1/runs/{accepted['id']}/stream?token=" in accepted["stream_url"]
        delivery = wait_for(lambda: CallbackDelivery.objects.filter(status="delivered").first(), timeout=20,
                            message="delivery")
    requests = hook.requests
    assert len(requests) == 4
    assert verifier.failures == [] and len(verifier.verified) == 4
    assert len({r.body for r in requests}) == 1  # the same bytes every time
    body = requests[0].json()
    run = Run.objects.get(id=response.json()["id"])
    assert body == {"id": str(run.id), "status": "completed", "output": run.output, "error": None,
                    "metadata": {"order": 17}, "started_at": body["started_at"], "ended_at": body["ended_at"]}
    assert body["started_at"].endswith("Z") and body["ended_at"].endswith("Z")
    secret = app.callback_signing_secret
    assert secret.startswith("whsec_")
    for r in requests:
        headers = {k.lower(): v for k, v in r.headers.items()}
        assert headers["webhook-id"] == str(delivery.id)
        assert verify(secret, r) == body  # the library's verification, not ours
        assert headers["authorization"] == "Bearer receiver-token-123"
        assert headers["content-type"] == "application/json"
    gaps = [b - a for a, b in zip(receiver.times, receiver.times[1:], strict=False)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.39  # 0.1, 0.2, 0.4 s: doubling
    assert gaps[0] < gaps[1] < gaps[2]
    assert (delivery.attempts, delivery.last_status_code, delivery.delivered_at is not None) == (4, 200, True)
    assert_no_canary(requests[0].body)


def test_a_receiver_that_never_accepts_ends_dead(api_client, actors, thread_executor, upstream, settings):
    settings.CALLBACK_RETRY_BASE_SECONDS = 0.01
    app = make_http_app(actors["project"], f"{upstream.url}/cb")
    with HttpStub(lambda r: StubResponse(500, {})) as always_down, HttpStub(lambda r: StubResponse(429, {})) as limited:
        invoke_async(api_client, app, actors["owner_key"], [{"url": always_down.url}, {"url": limited.url}])
        wait_for(lambda: CallbackDelivery.objects.filter(status="dead").count() == 2, timeout=20, message="dead")
    assert len(always_down.requests) == len(limited.requests) == settings.CALLBACK_MAX_ATTEMPTS >= 5
    dead = CallbackDelivery.objects.get(url=always_down.url)
    assert (dead.attempts, dead.last_status_code, dead.next_attempt_at) == (settings.CALLBACK_MAX_ATTEMPTS, 500, None)


def test_a_client_error_is_not_retried_and_a_network_error_is(api_client, actors, thread_executor, upstream, settings):
    settings.CALLBACK_RETRY_BASE_SECONDS = 0.01
    app = make_http_app(actors["project"], f"{upstream.url}/cb")
    with HttpStub(lambda r: StubResponse(400, {})) as refusing, HttpStub(lambda r: StubResponse(302, {}, {"Location": "https://example.com"})) as redirecting:
        invoke_async(api_client, app, actors["owner_key"], [
            {"url": refusing.url}, {"url": redirecting.url}, {"url": "http://127.0.0.1:9/closed"},
        ])
        wait_for(lambda: CallbackDelivery.objects.filter(status="dead").count() == 3, timeout=20, message="dead")
    assert len(refusing.requests) == 1 and len(redirecting.requests) == 1  # redirects are not followed
    closed = CallbackDelivery.objects.get(url="http://127.0.0.1:9/closed")
    assert closed.attempts == settings.CALLBACK_MAX_ATTEMPTS and closed.last_status_code is None and closed.last_error


@pytest.mark.parametrize(("url", "code"), [
    ("https://127.0.0.1/hook", "target_not_allowed"), ("https://localhost:8443/hook", "target_not_allowed"),
    ("https://[::1]/hook", "target_not_allowed"), ("https://169.254.169.254/latest", "target_not_allowed"),
    ("http://callbacks.example.com/hook", "bad_request"), ("ftp://x/y", "bad_request"),
])
def test_callback_urls_must_be_https_and_public_with_the_guard_on(api_client, simple_app, owner_key, settings, url,
                                                                   code):
    settings.ALLOW_PRIVATE_NETWORK_TARGETS = False
    response = invoke_async(api_client, simple_app, owner_key, [{"url": url}])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert not Run.objects.exists()


def test_callbacks_are_validated_in_shape_and_number(api_client, simple_app, owner_key):
    too_many = [{"url": f"https://hooks.example/{i}"} for i in range(6)]
    assert invoke_async(api_client, simple_app, owner_key, too_many).status_code == 400
    wrong_auth = [{"url": "http://127.0.0.1:1/h", "auth": {"type": "basic", "token": "x"}}]
    assert invoke_async(api_client, simple_app, owner_key, wrong_auth).status_code == 400
    with_sync = api_client.post(f"/apps/{simple_app.id}/", {"input": {"question": "q"}, "callbacks": [{"url": "http://x/"}]},
                                format="json", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert with_sync.status_code == 400
    stream_async = api_client.post(f"/apps/{simple_app.id}/", {"input": {"question": "q"}, "stream": True,
                                                               "execution_mode": "async"},
                                   format="json", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert stream_async.status_code == 400


def test_the_callback_auth_token_is_stored_encrypted(api_client, simple_app, owner_key):
    from django.db import connection

    invoke_async(api_client, simple_app, owner_key, [{"url": "http://127.0.0.1:1/h",
                                                      "auth": {"type": "bearer", "token": "tok-secret-998877"}}])
    with connection.cursor() as cursor:
        cursor.execute("SELECT auth FROM runs_callbackdelivery")
        stored = cursor.fetchone()[0]
    assert "tok-secret-998877" not in stored
    assert CallbackDelivery.objects.get().auth == {"type": "bearer", "token": "tok-secret-998877"}
    assert json.loads(json.dumps(CallbackDelivery.objects.get().metadata)) is None
