"""Token refresh during resolution: single-flight per connection, refresh-token rotation rules, failures."""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs

import pytest
from django.db import connection as db_connection
from django.db import connections

from apps.connect.models import EndUserLink
from apps.connections import oauth_flows
from apps.connections.models import Connection
from tests import factories
from tests.connect.conftest import build_connect_setup
from tests.support.http_stub import HttpStub, StubResponse

OLD_ACCESS = factories.CANARIES["access_token"]
OLD_REFRESH = factories.CANARIES["refresh_token"]


def _form(request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.body.decode()).items()}


class TokenEndpoint:
    """A loopback token endpoint: counts refresh calls, answers with a configurable token set."""

    def __init__(self, *, rotate: bool = True, error: str | None = None, status: int = 200, delay: float = 0.05):
        self.rotate, self.error, self.status, self.delay = rotate, error, status, delay
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, request) -> StubResponse:
        with self._lock:
            self.calls += 1
            n = self.calls
        time.sleep(self.delay)  # a realistic provider round trip widens any race
        if self.error:
            return StubResponse(400, {"error": self.error, "error_description": "refresh token is revoked"})
        if self.status != 200:
            return StubResponse(self.status, b"<html>Bad gateway</html>", {"Content-Type": "text/html"})
        body = {"access_token": f"fresh-access-{n}", "token_type": "Bearer", "expires_in": 3600, "scope": "read"}
        if self.rotate:
            body["refresh_token"] = f"fresh-refresh-{n}"
        return StubResponse(200, body)


def _oauth_connection(project, stub_url: str, *, expires_in: int = -10, user_id: str = "user-42") -> Connection:
    s = build_connect_setup(project, token_url=f"{stub_url}/token", revoke_url=f"{stub_url}/revoke")
    config = {"provider_id": str(s.provider.id), "scopes": ["read"], "access_token": OLD_ACCESS,
              "refresh_token": OLD_REFRESH, "expires_at": int(time.time()) + expires_in, "token_type": "Bearer"}
    link = factories.link_end_user(s.app, s.crm, user_id, config)
    Connection.objects.filter(pk=link.connection_id).update(provider=s.provider)
    return Connection.objects.get(pk=link.connection_id)


@pytest.mark.django_db(transaction=True)
def test_it_refreshes_an_expired_token_once_for_50_concurrent_resolutions(project):
    endpoint = TokenEndpoint()
    with HttpStub(endpoint) as stub:
        connection = _oauth_connection(project, stub.url)
        barrier = threading.Barrier(50)
        errors: list[BaseException] = []

        def resolve():
            try:
                barrier.wait()
                oauth_flows.refresh_if_needed(connection_ids=[connection.id])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=resolve) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert endpoint.calls == 1
    assert len(stub.requests) == 1
    sent = _form(stub.requests[0])
    assert sent["grant_type"] == "refresh_token"
    assert sent["refresh_token"] == OLD_REFRESH
    assert sent["client_id"] == "platform-client"
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE
    assert connection.config["access_token"] == "fresh-access-1"
    assert connection.config["refresh_token"] == "fresh-refresh-1"
    assert connection.config["expires_at"] > time.time() + 3000
    assert connection.expires_at is not None
    print("backend:", db_connection.vendor)


@pytest.mark.django_db
def test_a_response_without_a_refresh_token_keeps_the_old_one(project):
    endpoint = TokenEndpoint(rotate=False)
    with HttpStub(endpoint) as stub:
        connection = _oauth_connection(project, stub.url, expires_in=30)  # within the 60 s margin
        oauth_flows.refresh_if_needed(connection_ids=[connection.id])
    connection.refresh_from_db()
    assert endpoint.calls == 1
    assert connection.config["access_token"] == "fresh-access-1"
    assert connection.config["refresh_token"] == OLD_REFRESH
    assert connection.config["scope"] == "read"


@pytest.mark.django_db
def test_a_token_far_from_expiry_is_not_refreshed(project):
    endpoint = TokenEndpoint()
    with HttpStub(endpoint) as stub:
        connection = _oauth_connection(project, stub.url, expires_in=600)
        oauth_flows.refresh_if_needed(connection_ids=[connection.id])
    assert endpoint.calls == 0
    connection.refresh_from_db()
    assert connection.config["access_token"] == OLD_ACCESS


@pytest.mark.django_db
def test_invalid_grant_marks_the_connection_expired(project, caplog):
    endpoint = TokenEndpoint(error="invalid_grant")
    with HttpStub(endpoint) as stub:
        connection = _oauth_connection(project, stub.url)
        oauth_flows.refresh_if_needed(connection_ids=[connection.id])
    connection.refresh_from_db()
    assert connection.status == Connection.Status.EXPIRED
    assert connection.config["refresh_token"] == OLD_REFRESH
    assert OLD_REFRESH not in caplog.text and OLD_ACCESS not in caplog.text
    # An expired connection no longer satisfies the requirement, and is not retried on every run.
    with HttpStub(endpoint) as stub:
        oauth_flows.refresh_if_needed(connection_ids=[connection.id])
    assert endpoint.calls == 1


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", [TokenEndpoint(error="temporarily_unavailable"), TokenEndpoint(status=502)])
def test_other_refresh_errors_leave_the_connection_as_it_is(project, endpoint, caplog):
    with HttpStub(endpoint) as stub:
        connection = _oauth_connection(project, stub.url)
        oauth_flows.refresh_if_needed(connection_ids=[connection.id])
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE
    assert connection.config["access_token"] == OLD_ACCESS
    assert "refresh failed" in caplog.text
    for secret in (OLD_ACCESS, OLD_REFRESH, factories.CANARIES["client_secret"]):
        assert secret not in caplog.text


@pytest.mark.django_db
def test_an_unreachable_token_endpoint_leaves_the_connection_as_it_is(project):
    connection = _oauth_connection(project, "http://127.0.0.1:9")
    oauth_flows.refresh_if_needed(connection_ids=[connection.id])
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE


@pytest.mark.django_db
def test_the_token_endpoint_is_behind_the_ssrf_guard(project, settings):
    endpoint = TokenEndpoint()
    with HttpStub(endpoint) as stub:
        connection = _oauth_connection(project, stub.url)
        settings.ALLOW_PRIVATE_NETWORK_TARGETS = False
        oauth_flows.refresh_if_needed(connection_ids=[connection.id])
    assert endpoint.calls == 0
    connection.refresh_from_db()
    assert connection.config["access_token"] == OLD_ACCESS


@pytest.mark.django_db
def test_force_refresh_gets_a_new_token_even_before_expiry(project):
    endpoint = TokenEndpoint()
    with HttpStub(endpoint) as stub:
        connection = _oauth_connection(project, stub.url, expires_in=3000)
        assert oauth_flows.force_refresh(connection_id=connection.id) is True
    connection.refresh_from_db()
    assert connection.config["access_token"] == "fresh-access-1"


@pytest.mark.django_db
def test_force_refresh_reports_failure(project):
    with HttpStub(TokenEndpoint(error="invalid_grant")) as stub:
        connection = _oauth_connection(project, stub.url, expires_in=3000)
        assert oauth_flows.force_refresh(connection_id=connection.id) is False
    connection.refresh_from_db()
    assert connection.status == Connection.Status.EXPIRED


@pytest.mark.django_db
def test_refresh_ignores_non_oauth_and_unknown_connections(project):
    shared = factories.make_connection(project)
    oauth_flows.refresh_if_needed(connection_ids=[shared.id, "6a1c4c1e-4b4e-4a53-9a51-2b1f3a7f0000"])
    oauth_flows.refresh_if_needed(connection_ids=[])
    assert EndUserLink.objects.count() == 0


@pytest.mark.django_db
def test_revoke_upstream_sends_the_refresh_token_to_the_revocation_endpoint(project):
    with HttpStub(lambda r: StubResponse(200, {})) as stub:
        connection = _oauth_connection(project, stub.url, expires_in=3000)
        assert oauth_flows.revoke_upstream(connection=connection) is True
    sent = _form(stub.requests[0])
    assert stub.requests[0].path == "/revoke"
    assert sent["token"] == OLD_REFRESH and sent["token_type_hint"] == "refresh_token"


@pytest.mark.django_db
def test_revoke_upstream_reports_a_refusal_and_a_missing_endpoint(project):
    with HttpStub(lambda r: StubResponse(503, {"error": "unavailable"})) as stub:
        connection = _oauth_connection(project, stub.url, expires_in=3000)
        assert oauth_flows.revoke_upstream(connection=connection) is False
        connection.provider.revoke_url = ""
        connection.provider.save()
        connection.refresh_from_db()
        assert oauth_flows.revoke_upstream(connection=connection) is None
    assert oauth_flows.revoke_upstream(connection=factories.make_connection(project)) is None


@pytest.mark.django_db
def test_refresh_outcomes_are_counted_in_the_metrics(project):
    from prometheus_client import REGISTRY

    def count(outcome: str) -> float:
        return REGISTRY.get_sample_value("rcp_oauth2_refreshes_total", {"outcome": outcome}) or 0.0

    before = {outcome: count(outcome) for outcome in ("success", "failure")}
    endpoints = [TokenEndpoint(), TokenEndpoint(status=502), TokenEndpoint(error="temporarily_unavailable")]
    with HttpStub(lambda request: endpoints[0](request)) as stub:
        connection = _oauth_connection(project, stub.url, expires_in=3000)
        assert oauth_flows.force_refresh(connection_id=connection.id) is True
        for _ in range(2):
            endpoints.pop(0)
            assert oauth_flows.force_refresh(connection_id=connection.id) is False
    assert count("success") - before["success"] == 1
    assert count("failure") - before["failure"] == 2
