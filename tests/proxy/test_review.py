"""Regression tests from the SPEC §14 review (proxy)."""

from __future__ import annotations

import json

import pytest

from apps.proxy.models import ProxyCall
from tests import factories
from tests.proxy.test_proxy import call
from tests.support.http_stub import HttpStub, StubResponse

pytestmark = pytest.mark.django_db


def test_a_connection_the_http_merge_refuses_is_409_not_a_500(client, project, owner_key):
    with HttpStub() as stub:
        connection = factories.make_connection(project, name="templated", type="http", config={
            "url": f"{stub.url}/accounts/{{account_id}}", "headers": {"X-Team": "team-secret-5511"},
            "parameters": ["account_id"]})
        workflow = factories.make_workflow(project, "wf-templated")
        version = factories.make_version(workflow, factories.definition(
            factories.http_node("call", ref={"id": str(connection.id)}, url=f"{stub.url}/accounts/{{account_id}}/x",
                                parameters={"account_id": "7"})))
        app = factories.make_app(project, name="Templated", version=version)
        response = client.get(f"/apps/{app.id}/v1/proxy/connections/{connection.id}/things",
                              HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 409, response.content
    assert json.loads(response.content)["error"]["code"] == "connection_not_proxyable"
    assert stub.requests == []
    assert ProxyCall.objects.get().error_code == "connection_not_proxyable"


@pytest.mark.parametrize(("rest", "headers", "status"), [
    ("/v1/proxy/billing/x?user_id=a%00b", {}, 400),
    ("/v1/proxy/billing/x", {"HTTP_CONNECT_USER_ID": "a\x00b"}, 400),
    ("/v1/proxy/bil%00ling/x?user_id=user-42", {}, 404),
])
def test_a_nul_in_user_id_or_requirement_name_is_refused_not_a_500(client, world, rest, headers, status):
    # PostgreSQL text cannot hold NUL: these reached the resolution's query and failed with a DataError (500).
    response, content = call(client, world, "get", rest, **headers)

    assert response.status_code == status, content
    assert world.stub.requests == []


def test_a_nul_in_the_path_is_refused_and_the_call_still_recorded(client, world):
    response, content = call(client, world, "get", "/v1/proxy/billing/x%00y?user_id=user-42")

    assert response.status_code == 400, content
    row = ProxyCall.objects.get()  # PostgreSQL refused the row (NUL in text): the call went unrecorded
    assert (row.outcome, row.error_code, row.path) == ("refused", "bad_request", "x\ufffdy")
    assert world.stub.requests == []


@pytest.mark.parametrize("trick", ["..;/..;/admin", "x/..;/..;/admin", "..;jsessionid=1/admin", ".;/x", "x/..;"])
def test_a_dot_segment_with_path_parameters_is_refused(client, world, trick):
    # Tomcat and Jetty drop `;params` from a segment before resolving dot segments: `/base/..;/admin` is `/admin`
    # there, off the base path.
    response, content = call(client, world, "get", f"/v1/proxy/billing/{trick}?user_id=user-42")

    assert response.status_code == 400, content
    assert world.stub.requests == []


@pytest.mark.parametrize("status", [600, 999])
def test_an_upstream_status_django_cannot_send_is_502_and_recorded(client, world, status):
    # h11 accepts any three-digit status; Django's response refuses one over 599 (ValueError: a 500, no audit row).
    world.upstream.routes["/base/odd"] = lambda r: StubResponse(status, {"a": 1})

    response, content = call(client, world, "get", "/v1/proxy/billing/odd?user_id=user-42")

    assert response.status_code == 502, content
    assert json.loads(content)["error"]["code"] == "upstream_unreachable"
    row = ProxyCall.objects.get()
    assert (row.status, row.outcome, row.error_code) == (502, "upstream_error", "upstream_unreachable")
