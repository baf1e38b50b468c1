"""The authenticated proxy (SPEC §14) through the test client, against real loopback upstreams."""

from __future__ import annotations

import json

import pytest

from apps.connections.models import Connection
from apps.credentials.models import CredentialAccess
from apps.deployments.models import App
from apps.proxy.models import ProxyCall
from apps.proxy.services import StreamCut
from tests import factories
from tests.proxy.conftest import OLD_ACCESS, SHARED_KEY, USER_42_KEY, USER_43_KEY, oauth_link
from tests.support.http_stub import HttpStub, StubResponse
from tests.support.network import NoConnect

pytestmark = pytest.mark.django_db


def call(client, world, method: str, rest: str, *, key: str | None = None, body=None, **headers):
    kwargs = {"HTTP_AUTHORIZATION": f"Bearer {key or world.key}", **headers}
    if body is not None:
        kwargs["data"] = body if isinstance(body, (bytes, str)) else json.dumps(body)
        kwargs["content_type"] = headers.pop("content_type", "application/json")
    response = getattr(client, method)(world.path(rest), **kwargs)
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return response, content


def test_it_works_as_two_users_reaching_two_accounts(client, world):
    first, body_42 = call(client, world, "get", "/v1/proxy/billing/invoices?user_id=user-42&page=2")
    second, body_43 = call(client, world, "get", "/v1/proxy/billing/invoices?page=3", HTTP_CONNECT_USER_ID="user-43")

    assert (first.status_code, second.status_code) == (200, 200), (body_42, body_43)
    seen = world.stub.requests
    assert [(r.path, r.query) for r in seen] == [("/base/invoices", {"page": ["2"]}), ("/base/invoices", {"page": ["3"]})]
    assert seen[0].headers["Authorization"] == f"Bearer {USER_42_KEY}"
    assert seen[1].headers["Authorization"] == f"Bearer {USER_43_KEY}"
    assert "Connect-User-Id" not in seen[1].headers
    # The echo gives the credential back: masked.
    assert json.loads(body_42)["headers"]["Authorization"] == "********"
    assert USER_42_KEY.encode() not in body_42 and USER_43_KEY.encode() not in body_43


def test_it_forwards_the_method_body_and_headers_but_not_the_callers_credentials(client, world):
    response, content = call(client, world, "post", "/v1/proxy/billing/invoices/7/pay?user_id=user-42",
                             body={"amount": 12}, HTTP_X_TRACE="t-1", HTTP_COOKIE="session=caller-cookie",
                             HTTP_PROXY_AUTHORIZATION="Basic eDp5", HTTP_X_FORWARDED_FOR="10.0.0.1")

    assert response.status_code == 200, content
    seen = world.stub.requests[0]
    assert (seen.method, seen.path, seen.json()) == ("POST", "/base/invoices/7/pay", {"amount": 12})
    assert seen.headers["X-Trace"] == "t-1"
    assert seen.headers["Authorization"] == f"Bearer {USER_42_KEY}"  # the connection's, not the access key
    assert world.key not in json.dumps(seen.headers)
    assert not {"Cookie", "Proxy-Authorization", "X-Forwarded-For"} & set(seen.headers)
    assert seen.headers["Host"] == world.stub.url.removeprefix("http://")


def test_a_shared_connection_is_reached_by_its_id(client, world):
    response, content = call(client, world, "get", f"/v1/proxy/connections/{world.shared.id}/items/1")

    assert response.status_code == 200, content
    seen = world.stub.requests[0]
    assert seen.path == "/shared/items/1" and seen.headers["X-Api-Key"] == SHARED_KEY
    assert json.loads(content)["headers"]["X-Api-Key"] == "********"


def test_the_base_path_itself_and_a_trailing_slash(client, world):
    call(client, world, "get", "/v1/proxy/billing/?user_id=user-42")
    call(client, world, "get", "/v1/proxy/billing/items/?user_id=user-42")

    assert [r.path for r in world.stub.requests] == ["/base", "/base/items/"]


def test_an_unlinked_user_gets_409_with_what_to_link(client, world):
    response, content = call(client, world, "get", "/v1/proxy/billing/invoices?user_id=user-99")

    assert response.status_code == 409
    error = json.loads(content)["error"]
    assert error["code"] == "requirements_unsatisfied"
    assert error["details"]["unsatisfied"] == [{"id": str(world.setup.billing.id), "name": "billing",
                                                 "title": "Your billing account"}]
    assert world.stub.requests == []
    assert CredentialAccess.objects.filter(app=world.app, user_id="user-99", outcome="unsatisfied").count() == 1
    assert ProxyCall.objects.get().outcome == ProxyCall.Outcome.REFUSED


def test_a_link_that_is_not_active_does_not_count(client, world):
    Connection.objects.filter(app=world.app, user_id="user-42").update(status=Connection.Status.UNAUTHORIZED)

    response, _ = call(client, world, "get", "/v1/proxy/billing/invoices?user_id=user-42")

    assert response.status_code == 409 and world.stub.requests == []


@pytest.mark.parametrize("rest,code", [
    ("/v1/proxy/billing/invoices", "bad_request"),  # no user_id
    ("/v1/proxy/nope/invoices?user_id=user-42", "not_found"),  # not a requirement of the deployed version
    ("/v1/proxy/connections/7d0c6a7e-2a53-4a6e-9d7e-3f0e7b6a1c11/x", "not_found"),
])
def test_it_refuses_what_the_deployed_version_does_not_offer(client, world, rest, code):
    response, content = call(client, world, "get", rest)

    assert json.loads(content)["error"]["code"] == code
    assert world.stub.requests == []


def test_user_id_query_and_header_must_agree(client, world):
    response, content = call(client, world, "get", "/v1/proxy/billing/x?user_id=user-42", HTTP_CONNECT_USER_ID="user-43")

    assert response.status_code == 400 and world.stub.requests == []


def test_it_needs_an_access_key_even_on_a_public_app(client, world):
    App.objects.filter(id=world.app.id).update(access_type=App.AccessType.PUBLIC)

    response = client.get(world.path("/v1/proxy/billing/x?user_id=user-42"))

    assert response.status_code == 401 and world.stub.requests == []


def test_it_only_allows_the_five_methods(client, world):
    response = client.head(world.path("/v1/proxy/billing/x?user_id=user-42"), HTTP_AUTHORIZATION=f"Bearer {world.key}")

    assert response.status_code == 405 and world.stub.requests == []


def test_set_cookie_and_hop_by_hop_headers_are_dropped(client, world):
    world.upstream.routes["/base/login"] = lambda r: StubResponse(
        200, {"ok": True}, {"Set-Cookie": "session=upstream-session; Path=/", "X-Upstream": "kept",
                            "Keep-Alive": "timeout=5", "Alt-Svc": 'h3=":443"'})

    response, _ = call(client, world, "get", "/v1/proxy/billing/login?user_id=user-42")

    assert response.status_code == 200
    assert response["X-Upstream"] == "kept"
    assert not response.has_header("Set-Cookie") and not response.cookies
    assert not response.has_header("Keep-Alive") and not response.has_header("Alt-Svc")


def test_an_echoed_secret_in_a_header_of_the_answer_is_masked(client, world):
    world.upstream.routes["/base/debug"] = lambda r: StubResponse(200, {}, {"X-Debug": r.headers["Authorization"]})

    response, _ = call(client, world, "get", "/v1/proxy/billing/debug?user_id=user-42")

    assert response["X-Debug"] == "********"


def test_upstream_statuses_are_passed_on(client, world):
    world.upstream.routes["/base/missing"] = lambda r: StubResponse(404, {"detail": "no such invoice"})

    response, content = call(client, world, "get", "/v1/proxy/billing/missing?user_id=user-42")

    assert response.status_code == 404 and json.loads(content) == {"detail": "no such invoice"}
    row = ProxyCall.objects.get()
    assert (row.status, row.outcome, row.user_id, row.target, row.path) == (404, "completed", "user-42", "billing", "missing")


def test_one_audit_row_per_call_without_the_query_string(client, world):
    call(client, world, "get", "/v1/proxy/billing/invoices?user_id=user-42&api_key=caller-secret-1234")

    row = ProxyCall.objects.get()
    assert (row.method, row.path, row.status, row.outcome) == ("GET", "invoices", 200, "completed")
    assert row.app_id == world.app.id and row.user_id == "user-42"
    assert str(row.requirement_id) == str(world.setup.billing.id)
    assert row.connection_id is None and row.latency_ms is not None and row.duration_ms >= row.latency_ms
    assert row.bytes_sent > 0
    assert "caller-secret-1234" not in json.dumps(list(ProxyCall.objects.values()), default=str)


# ----------------------------------------------------------------------------------------------- OAuth2 401


def test_a_401_refreshes_once_and_retries_with_the_new_token(client, world):
    connection = oauth_link(world.setup, "user-42")

    response, content = call(client, world, "get", "/v1/proxy/crm/contacts?user_id=user-42")

    assert response.status_code == 200, content
    assert world.upstream.token_calls == 1
    crm = [r for r in world.stub.requests if r.path.startswith("/crm/")]
    assert [r.headers["Authorization"] for r in crm] == [f"Bearer {OLD_ACCESS}", "Bearer fresh-access-1"]
    assert json.loads(content)["headers"]["Authorization"] == "Bearer ********"  # the new token is masked too
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE and connection.config["access_token"] == "fresh-access-1"
    assert ProxyCall.objects.get().retried is True


def test_a_401_after_the_refresh_is_passed_on_without_a_second_refresh(client, world):
    connection = oauth_link(world.setup, "user-42")
    world.upstream.routes["/crm/contacts"] = lambda r: StubResponse(401, {"error": "insufficient_scope"})

    response, content = call(client, world, "get", "/v1/proxy/crm/contacts?user_id=user-42")

    assert response.status_code == 401 and json.loads(content) == {"error": "insufficient_scope"}
    assert world.upstream.token_calls == 1
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE  # a fresh token refused on one path: not a dead grant


def test_a_401_with_an_api_key_marks_the_users_link_unauthorized_as_a_run_would(client, world):
    world.upstream.routes["/base/me"] = lambda r: StubResponse(401, {"error": "revoked"})

    response, _ = call(client, world, "get", "/v1/proxy/billing/me?user_id=user-42")

    assert response.status_code == 401
    link = Connection.objects.get(app=world.app, user_id="user-42")
    assert link.status == Connection.Status.UNAUTHORIZED
    again, _ = call(client, world, "get", "/v1/proxy/billing/me?user_id=user-42")
    assert again.status_code == 409  # the status endpoint and the next call show it unsatisfied


# ------------------------------------------------------------------------------------------ masking, limits


def _split_secret_upstream(secret: str):
    """Writes a body whose secret is split across two chunked writes, a moment apart (two network reads)."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = len(secret) // 2
            for piece in (f"before {secret[:half]}", f"{secret[half:]} after"):
                data = piece.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                time.sleep(0.1)
            self.wfile.write(b"0\r\n\r\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_secret_split_across_chunks_is_masked(client, project, owner_key):
    server = _split_secret_upstream(SHARED_KEY)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        app, connection = _app_with_shared(project, url)
        response = client.get(f"/apps/{app.id}/v1/proxy/connections/{connection.id}/x", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
        chunks = list(response.streaming_content)
    finally:
        server.shutdown()
        server.server_close()
    assert b"".join(chunks) == b"before ******** after"


def _app_with_shared(project, url: str, *, name: str = "Shared only"):
    connection = factories.make_connection(project, name=f"conn-{name}", config={"url": url, "api_key": SHARED_KEY})
    workflow = factories.make_workflow(project, f"wf-{name}")
    version = factories.make_version(workflow, factories.definition(
        factories.http_node("call", ref={"id": str(connection.id)}, url=f"{url}/call")))
    return factories.make_app(project, name=name, version=version), connection


def test_an_answer_announced_over_the_limit_is_refused(client, world, settings):
    settings.PROXY_MAX_RESPONSE_BYTES = 1000
    world.upstream.routes["/base/big"] = lambda r: StubResponse(200, b"x" * 5000, {"Content-Type": "text/plain"})

    response, content = call(client, world, "get", "/v1/proxy/billing/big?user_id=user-42")

    assert response.status_code == 502 and json.loads(content)["error"]["code"] == "upstream_too_large"
    assert ProxyCall.objects.get().outcome == ProxyCall.Outcome.UPSTREAM_ERROR


def test_an_answer_found_over_the_limit_while_streaming_is_cut(client, project, owner_key, settings):
    settings.PROXY_MAX_RESPONSE_BYTES = 10
    server = _split_secret_upstream("0123456789abcdef")  # chunked: no Content-Length to refuse it by
    try:
        app, connection = _app_with_shared(project, f"http://127.0.0.1:{server.server_address[1]}")
        response = client.get(f"/apps/{app.id}/v1/proxy/connections/{connection.id}/x", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
        assert response.status_code == 200  # the headers were sent before the size was known
        with pytest.raises(StreamCut):
            b"".join(response.streaming_content)
    finally:
        server.shutdown()
        server.server_close()
    row = ProxyCall.objects.get()
    assert (row.outcome, row.error_code) == ("too_large", "upstream_too_large")


def test_a_forbidden_target_is_refused_before_connecting(client, world, settings):
    settings.ALLOW_PRIVATE_NETWORK_TARGETS = False
    from apps.runs import http

    http._clients.clear()
    with NoConnect():
        response, content = call(client, world, "get", "/v1/proxy/billing/x?user_id=user-42")
    http._clients.clear()

    assert response.status_code == 400 and json.loads(content)["error"]["code"] == "target_not_allowed"
    assert world.stub.requests == []


def test_redirects_are_not_followed_and_location_stays_on_the_proxy(client, world, thief):
    world.upstream.routes["/base/old"] = lambda r: StubResponse(302, {}, {"Location": f"{world.stub.url}/base/new?p=1"})
    world.upstream.routes["/base/away"] = lambda r: StubResponse(302, {}, {"Location": f"{thief.url}/steal"})

    inside, _ = call(client, world, "get", "/v1/proxy/billing/old?user_id=user-42")
    outside, _ = call(client, world, "get", "/v1/proxy/billing/away?user_id=user-42")

    assert inside.status_code == 302 and inside["Location"] == f"/apps/{world.app.id}/v1/proxy/billing/new?p=1"
    assert outside.status_code == 302 and not outside.has_header("Location")
    assert [r.path for r in world.stub.requests] == ["/base/old", "/base/away"] and thief.requests == []


def test_an_http_connection_with_secret_body_fields_merges_a_json_body(client, project, owner_key):
    with HttpStub() as stub:
        connection = factories.make_connection(project, name="with-data", type="http", config={
            "url": f"{stub.url}/api", "headers": {"X-Team": "team-secret-5511"}, "data": {"tenant": "tenant-secret-77"}})
        workflow = factories.make_workflow(project, "wf-data")
        version = factories.make_version(workflow, factories.definition(
            factories.http_node("call", ref={"id": str(connection.id)}, url=f"{stub.url}/api/x")))
        app = factories.make_app(project, name="Data", version=version)
        path = f"/apps/{app.id}/v1/proxy/connections/{connection.id}/things"
        ok = client.post(path, data=json.dumps({"name": "n", "tenant": "mine"}), content_type="application/json",
                         HTTP_AUTHORIZATION=f"Bearer {owner_key}", HTTP_X_TEAM="caller")
        b"".join(ok.streaming_content)
        refused = client.post(path, data=b"not json", content_type="text/plain", HTTP_AUTHORIZATION=f"Bearer {owner_key}")

    assert ok.status_code == 200
    assert stub.requests[0].json() == {"name": "n", "tenant": "tenant-secret-77"}
    assert stub.requests[0].headers["X-Team"] == "team-secret-5511"
    assert refused.status_code == 400 and len(stub.requests) == 1


def test_old_audit_rows_are_purged_by_the_retention_job(client, world, settings):
    from datetime import timedelta

    from django.utils import timezone

    from apps.proxy.retention import proxy_calls_purge_expired

    call(client, world, "get", "/v1/proxy/billing/a?user_id=user-42")
    call(client, world, "get", "/v1/proxy/billing/b?user_id=user-42")
    ProxyCall.objects.filter(path="a").update(created_at=timezone.now() - timedelta(days=settings.RETENTION_AUDIT_DAYS + 1))

    assert proxy_calls_purge_expired(dry_run=True) == {"proxy_calls": 1}
    assert proxy_calls_purge_expired() == {"proxy_calls": 1}
    assert list(ProxyCall.objects.values_list("path", flat=True)) == ["b"]


def test_calls_are_rate_limited_per_access_key(client, world, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "proxy": (2, 60)}

    statuses = [call(client, world, "get", "/v1/proxy/billing/x?user_id=user-42")[0].status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    assert len(world.stub.requests) == 2


def test_calls_are_counted_in_the_metrics(client, world):
    from apps.core import metrics

    before = metrics.PROXY_CALLS.labels("200", "completed")._value.get()
    call(client, world, "get", "/v1/proxy/billing/x?user_id=user-42")

    assert metrics.PROXY_CALLS.labels("200", "completed")._value.get() == before + 1


def test_a_non_json_body_and_other_headers_pass_through(client, world):
    def answer(request):
        return StubResponse(200, b"raw", {"Content-Type": "", "Link": "<a>; rel=next"})

    world.upstream.routes["/base/raw"] = answer
    response, content = call(client, world, "get", "/v1/proxy/billing/raw?user_id=user-42")

    assert content == b"raw" and response["Link"] == "<a>; rel=next"
