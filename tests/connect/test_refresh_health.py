"""SPEC §13 health and proactive refresh against a loopback token endpoint: the schedule tokens get, the
`connections.refresh_due` job (through apps.scheduler), and what each refresh outcome does to the connection
and which lifecycle event it sends (captured with a receiver of apps.connections.signals.connection_event)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from apps.connections import oauth_flows
from apps.connections.models import Connection
from apps.connections.oauth_flows import refresh_schedule
from apps.connections.signals import connection_event
from apps.credentials.services import handle_unauthorized
from apps.scheduler.services import job_run_if_due
from tests import factories
from tests.connect.conftest import build_connect_setup
from tests.connect.test_refresh import OLD_ACCESS, OLD_REFRESH, TokenEndpoint
from tests.support.endless import TOTAL, endless_answer
from tests.support.http_stub import HttpStub, StubResponse


@pytest.fixture
def events():
    """Every connection_event sent during the test, as (type, connection_id, data)."""
    captured: list[tuple[str, str, dict]] = []
    lock = threading.Lock()

    def receiver(sender, *, event_type, connection_id, data, **kwargs):
        with lock:
            captured.append((event_type, str(connection_id), data))

    connection_event.connect(receiver, weak=False, dispatch_uid="test_refresh_health")
    yield captured
    connection_event.disconnect(dispatch_uid="test_refresh_health")


class Scripted:
    """A token endpoint answering from a script: each call takes the next answer (the last one repeats)."""

    def __init__(self, *answers: StubResponse | TokenEndpoint):
        self.answers, self.calls = list(answers), 0
        self._lock = threading.Lock()

    def __call__(self, request) -> StubResponse:
        with self._lock:
            self.calls += 1
            answer = self.answers[0] if len(self.answers) == 1 else self.answers.pop(0)
        return answer(request) if callable(answer) else answer


UNAVAILABLE = StubResponse(503, b"<html>upstream says: Bad gateway, internal host db-7</html>", {"Content-Type": "text/html"})


def _links(project, stub_url: str, count: int = 1, *, expires_in: int = -10, **extra) -> list[Connection]:
    """`count` end users linked to one OAuth2 requirement whose token endpoint is the stub."""
    s = build_connect_setup(project, token_url=f"{stub_url}/token")
    result = []
    for n in range(count):
        config = {"provider_id": str(s.provider.id), "scopes": ["read"], "access_token": OLD_ACCESS,
                  "refresh_token": OLD_REFRESH, "expires_at": int(time.time()) + expires_in, "token_type": "Bearer"}
        link = factories.link_end_user(s.app, s.crm, f"user-{n}", config)
        Connection.objects.filter(pk=link.connection_id).update(
            provider=s.provider, expires_at=datetime.fromtimestamp(config["expires_at"], tz=UTC), **extra)
        result.append(Connection.objects.get(pk=link.connection_id))
    return result


def _due_now(connection: Connection) -> None:
    """Time passes: the connection's next refresh (or backoff) has come."""
    Connection.objects.filter(pk=connection.pk).update(next_refresh_at=timezone.now() - timedelta(seconds=1))


def _run_job():
    from apps.scheduler.models import ScheduledJob

    ScheduledJob.objects.filter(name="connections.refresh_due").delete()  # due at once, whatever ran before
    ran, result = job_run_if_due("connections.refresh_due")
    assert ran
    return result


# ---- the schedule -----------------------------------------------------------------------------------------


def test_a_refresh_schedules_the_next_one_ahead_of_expiry(project, settings):
    settings.OAUTH_REFRESH_AHEAD_SECONDS = 600
    with HttpStub(TokenEndpoint()) as stub:
        [connection] = _links(project, stub.url, expires_in=30)
        before = timezone.now()
        assert oauth_flows.force_refresh(connection_id=connection.id)
    connection.refresh_from_db()
    expires = datetime.fromtimestamp(connection.config["expires_at"], tz=UTC)
    assert connection.next_refresh_at == expires - timedelta(seconds=600)
    assert before <= connection.last_refreshed_at <= timezone.now()
    assert (connection.health, connection.refresh_failures, connection.status_reason) == ("ok", 0, "")


def test_a_long_lived_token_is_still_refreshed_daily():
    now = timezone.now()
    tokens = {"refresh_token": "r", "expires_at": int(now.timestamp()) + 30 * 86400}
    assert refresh_schedule(tokens=tokens, now=now) == now + timedelta(days=1)
    assert refresh_schedule(tokens={"refresh_token": "r"}, now=now) == now + timedelta(days=1)  # unknown expiry


def test_a_short_lived_token_is_refreshed_at_half_its_life_and_nothing_without_a_refresh_token():
    now = timezone.now().replace(microsecond=0)
    assert refresh_schedule(tokens={"refresh_token": "r", "expires_at": int(now.timestamp()) + 300}, now=now) == (
        now + timedelta(seconds=150))
    assert refresh_schedule(tokens={"expires_at": int(now.timestamp()) + 3600}, now=now) is None


# ---- the job ----------------------------------------------------------------------------------------------


def test_the_job_refreshes_what_is_due_and_nothing_else(project, events):
    endpoint = TokenEndpoint(delay=0)
    with HttpStub(endpoint) as stub:
        due, later = _links(project, stub.url, 2, expires_in=3600)
        _due_now(due)
        Connection.objects.filter(pk=later.pk).update(next_refresh_at=timezone.now() + timedelta(hours=1))
        result = _run_job()
    assert endpoint.calls == 1
    assert result["refreshed"] == 1
    due.refresh_from_db(), later.refresh_from_db()
    assert due.config["access_token"] == "fresh-access-1" and later.config["access_token"] == OLD_ACCESS
    assert due.next_refresh_at > timezone.now()
    assert events == []  # a routine refresh is no state change anyone is told about


def test_the_job_works_through_every_due_connection_in_batches(project):
    endpoint = TokenEndpoint(delay=0)
    with HttpStub(endpoint) as stub:
        links = _links(project, stub.url, 5, expires_in=3600)
        for connection in links:
            _due_now(connection)
        result = oauth_flows.refresh_due(batch_size=2)
    assert endpoint.calls == 5 and result["refreshed"] == 5
    assert Connection.objects.filter(pk__in=[c.pk for c in links], next_refresh_at__gt=timezone.now()).count() == 5


def test_the_job_picks_up_tokens_stored_before_the_schedule_existed(project):
    endpoint = TokenEndpoint(delay=0)
    with HttpStub(endpoint) as stub:
        [connection] = _links(project, stub.url, expires_in=120)  # next_refresh_at unset, expiry within the lead
        _run_job()
    connection.refresh_from_db()
    assert endpoint.calls == 1 and connection.config["access_token"] == "fresh-access-1"


def test_the_job_marks_a_lapsed_token_without_refresh_token_expired(project, events):
    with HttpStub(TokenEndpoint()) as stub:
        [connection] = _links(project, stub.url, expires_in=-5)
        config = {k: v for k, v in connection.config.items() if k != "refresh_token"}
        Connection.objects.filter(pk=connection.pk).update(config=config)
        _run_job()
        _run_job()
    connection.refresh_from_db()
    assert connection.status == Connection.Status.EXPIRED
    assert events == [("connection.expired", str(connection.pk), {"previous_status": "active"})]


def test_a_job_refresh_answer_without_refresh_token_keeps_the_stored_one(project):
    with HttpStub(TokenEndpoint(rotate=False)) as stub:
        [connection] = _links(project, stub.url, expires_in=3600)
        _due_now(connection)
        _run_job()
    connection.refresh_from_db()
    assert connection.config["access_token"] == "fresh-access-1"
    assert connection.config["refresh_token"] == OLD_REFRESH
    assert connection.next_refresh_at is not None  # still refreshable: the kept refresh token schedules it


# ---- outcomes ---------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_invalid_grant_expires_the_link_and_sends_connection_expired_once_under_a_race(project, events):
    endpoint = TokenEndpoint(error="invalid_grant")
    with HttpStub(endpoint) as stub:
        [connection] = _links(project, stub.url)
        _due_now(connection)
        barrier = threading.Barrier(32)
        errors: list[BaseException] = []

        def race(n: int):
            try:
                barrier.wait()
                if n % 3 == 0:
                    oauth_flows.refresh_due()
                elif n % 3 == 1:
                    oauth_flows.refresh_if_needed(connection_ids=[connection.id])
                else:
                    handle_unauthorized(connection_id=str(connection.id), run_id=None)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=race, args=(n,)) for n in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors, errors
    connection.refresh_from_db()
    assert connection.status == Connection.Status.EXPIRED
    assert "invalid_grant" in connection.status_reason and OLD_REFRESH not in connection.status_reason
    assert connection.next_refresh_at is None
    assert endpoint.calls == 1
    assert events == [("connection.expired", str(connection.pk), {"previous_status": "active"})]


def test_a_refused_client_marks_the_connection_unauthorized(project, events):
    endpoint = Scripted(StubResponse(401, {"error": "invalid_client", "error_description": "client secret is wrong"}))
    with HttpStub(endpoint) as stub:
        [connection] = _links(project, stub.url)
        _due_now(connection)
        result = _run_job()
        assert oauth_flows.force_refresh(connection_id=connection.id) is False  # unauthorized: tried again, no event
    connection.refresh_from_db()
    assert result["unauthorized"] == 1
    assert connection.status == Connection.Status.UNAUTHORIZED
    assert "invalid_client" in connection.status_reason and "wrong" not in connection.status_reason
    assert events == [("connection.unauthorized", str(connection.pk), {"previous_status": "active"})]


def test_a_503_degrades_health_with_backoff_then_recovers(project, settings, events, caplog):
    settings.OAUTH_REFRESH_RETRY_BASE_SECONDS = 60
    settings.OAUTH_REFRESH_RETRY_MAX_SECONDS = 100
    endpoint = Scripted(UNAVAILABLE, UNAVAILABLE, UNAVAILABLE, TokenEndpoint(delay=0))
    with HttpStub(endpoint) as stub:
        [connection] = _links(project, stub.url, expires_in=3600)
        delays = []
        for _ in range(3):
            _due_now(connection)
            before = timezone.now()
            assert _run_job()["failed"] == 1
            connection.refresh_from_db()
            delays.append(round((connection.next_refresh_at - before).total_seconds()))
            assert connection.status == Connection.Status.ACTIVE
            assert connection.health == Connection.Health.DEGRADED
            assert connection.config["access_token"] == OLD_ACCESS
        assert connection.refresh_failures == 3
        assert "HTTP 503" in connection.status_reason and "Bad gateway" not in connection.status_reason
        _due_now(connection)
        assert _run_job()["refreshed"] == 1
    assert delays == [60, 100, 100]  # doubling from the base, capped
    connection.refresh_from_db()
    assert (connection.health, connection.refresh_failures, connection.status_reason) == ("ok", 0, "")
    assert connection.status == Connection.Status.ACTIVE and connection.config["access_token"] == "fresh-access-1"
    cid = str(connection.pk)
    assert events == [("connection.refresh_failed", cid, {"attempt": 1}), ("connection.refresh_failed", cid, {"attempt": 2}),
                      ("connection.refresh_failed", cid, {"attempt": 3}), ("connection.recovered", cid, {})]
    assert "db-7" not in caplog.text


@pytest.mark.parametrize("answer", [
    StubResponse(429, {"error": "slow_down"}),
    StubResponse(429, b"Too Many Requests", {"Content-Type": "text/plain"}),
    StubResponse(200, {"token_type": "Bearer"}),  # no access token
])
def test_rate_limits_and_unusable_answers_are_transient(project, events, answer):
    with HttpStub(Scripted(answer)) as stub:
        [connection] = _links(project, stub.url)
        _due_now(connection)
        assert _run_job()["failed"] == 1
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE and connection.health == Connection.Health.DEGRADED
    assert [e[0] for e in events] == ["connection.refresh_failed"]


def test_an_unreachable_token_endpoint_is_transient(project, events):
    [connection] = _links(project, "http://127.0.0.1:9")
    _due_now(connection)
    assert _run_job()["failed"] == 1
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE and connection.health == Connection.Health.DEGRADED
    assert events == [("connection.refresh_failed", str(connection.pk), {"attempt": 1})]


def test_a_token_endpoint_answering_an_endless_body_is_not_read_whole(project, events):
    """The token URL is whatever a project's admin typed: an answer of gigabytes must not fill a worker's memory.
    The refresh reads at most oauth_client.MAX_ANSWER_BYTES, hangs up, and counts a transient failure."""
    with endless_answer(content_type="application/json", fill=b" ") as (url, written):
        [connection] = _links(project, url)
        _due_now(connection)
        assert _run_job()["failed"] == 1
        assert written["done"].wait(30)
    connection.refresh_from_db()
    assert connection.health == Connection.Health.DEGRADED and "(AnswerTooLarge)" in connection.status_reason
    assert written["bytes"] < TOTAL


def test_runs_do_not_ask_the_provider_again_during_the_backoff(project):
    endpoint = Scripted(UNAVAILABLE)
    with HttpStub(endpoint) as stub:
        [connection] = _links(project, stub.url, expires_in=30)
        oauth_flows.refresh_if_needed(connection_ids=[connection.id])
        for _ in range(3):
            oauth_flows.refresh_if_needed(connection_ids=[connection.id])
            assert oauth_flows.refresh_due()["failed"] == 0
    assert endpoint.calls == 1


def test_a_transient_failure_after_a_401_on_use_keeps_the_link_active(project, events):
    """A provider 401 on use, then a refresh the token endpoint cannot answer (503): the status stays."""
    with HttpStub(Scripted(UNAVAILABLE)) as stub:
        [connection] = _links(project, stub.url, expires_in=3000)
        assert handle_unauthorized(connection_id=str(connection.id), run_id=None) is None
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE and connection.health == Connection.Health.DEGRADED
    assert [e[0] for e in events] == ["connection.refresh_failed"]


def test_invalid_grant_after_a_401_on_use_leaves_the_link_expired(project, events):
    with HttpStub(TokenEndpoint(error="invalid_grant")) as stub:
        [connection] = _links(project, stub.url, expires_in=3000)
        assert handle_unauthorized(connection_id=str(connection.id), run_id=None) is None
    connection.refresh_from_db()
    assert connection.status == Connection.Status.EXPIRED
    assert events == [("connection.expired", str(connection.pk), {"previous_status": "active"})]


def test_a_401_on_use_without_refresh_marks_the_link_unauthorized_once(project, events):
    app_setup = build_connect_setup(project, app_name="Keys bot", workflow_name="keys")
    link = factories.link_end_user(app_setup.app, app_setup.billing, "user-7",
                                   {"url": "https://billing.example.com", "api_key": "k" * 24})
    for _ in range(2):
        handle_unauthorized(connection_id=str(link.connection_id), run_id=None)
    assert Connection.objects.get(pk=link.connection_id).status == Connection.Status.UNAUTHORIZED
    assert events == [("connection.unauthorized", str(link.connection_id), {})]


# ---- where the health shows -------------------------------------------------------------------------------


def test_the_management_api_shows_the_health_of_a_connection_and_its_link(project, owner_key):
    with HttpStub(Scripted(UNAVAILABLE)) as stub:
        [connection] = _links(project, stub.url)
        _due_now(connection)
        _run_job()
    connection.refresh_from_db()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    shown = client.get(f"/v1/connections/{connection.pk}").json()["data"]
    assert shown["health"] == "degraded" and "HTTP 503" in shown["status_reason"]
    assert shown["next_refresh_at"] is not None and shown["last_refreshed_at"] is None
    assert shown["last_verified_at"] is None
    [link] = client.get(f"/v1/apps/{connection.app_id}/links").json()["data"]
    assert {k: link[k] for k in ("health", "status_reason", "next_refresh_at")} == {
        k: shown[k] for k in ("health", "status_reason", "next_refresh_at")}


def test_the_admin_shows_the_health_read_only(project, operator_client):
    from django.urls import reverse

    with HttpStub(Scripted(UNAVAILABLE)) as stub:
        [connection] = _links(project, stub.url)
        _due_now(connection)
        _run_job()
    page = operator_client.get(reverse("admin:connections_connection_change", args=[connection.pk])).content.decode()
    assert "Degraded (transient refresh failures)" in page and "HTTP 503" in page
    assert 'name="health"' not in page and 'name="next_refresh_at"' not in page
