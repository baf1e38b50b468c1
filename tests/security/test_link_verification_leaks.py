"""SPEC §13 link-time verification never leaks the credential it checks: not in the answer, not in a log line,
not in the stored account, whatever a hostile upstream echoes (the key in its body, its headers, a redirect,
or as the "account" itself). The session-wide canary scan (tests/support/canary.py) watches every answer and
log record as well; these tests also check the rows and logs themselves."""

from __future__ import annotations

import logging

import pytest

from apps.connect import tokens
from apps.connect.models import EndUserLink
from apps.connections.models import Connection
from tests import factories
from tests.conftest import assert_no_canary
from tests.connect.conftest import bearer
from tests.connect.link_fields_support import _world
from tests.support.http_stub import HttpStub, StubResponse

pytestmark = pytest.mark.django_db

KEY = factories.CANARIES["user42_api_key"]


def _submit(api_client, app, requirement):
    token, _ = tokens.mint(app_id=str(app.id), user_id="user-42")
    return api_client.post(f"/v1/connect/requirements/{requirement.id}/credentials",
                           {"type": "http_api_key", "config": {"api_key": KEY}}, format="json", **bearer(token))


@pytest.mark.parametrize("answer", [
    lambda key: StubResponse(401, {"error": f"bad key {key}"}, {"X-Echo": key}),
    lambda key: StubResponse(500, f"<pre>Authorization: {key}</pre>".encode(), {"Content-Type": "text/html"}),
    lambda key: StubResponse(418, {"you_sent": key}),
    lambda key: StubResponse(302, b"", {"Location": f"https://elsewhere.example/?key={key}"}),
], ids=["401-body-and-header", "500-html", "unexpected-status", "redirect-elsewhere"])
def test_a_hostile_upstream_cannot_make_the_verification_leak_the_key(api_client, project, caplog, answer):
    with HttpStub(lambda request: answer(request.headers.get("X-Api-Key", ""))) as hostile:
        app, requirement = _world(project, hostile.url, verify={"path": "/v1/me"})
        with caplog.at_level(logging.DEBUG):
            response = _submit(api_client, app, requirement)
    assert response.status_code == 422
    assert_no_canary(response.content)
    assert_no_canary("\n".join(record.getMessage() for record in caplog.records))
    assert not Connection.objects.filter(app=app).exists()


def test_an_account_that_is_the_key_is_stored_masked(api_client, project):
    with HttpStub(lambda request: StubResponse(200, {"id": 7, "name": request.headers.get("X-Api-Key")})) as echoing:
        app, requirement = _world(project, echoing.url,
                                  verify={"path": "/v1/me", "account": {"id": "$.id", "label": "$.name"}})
        response = _submit(api_client, app, requirement)
    assert response.status_code == 201, response.content
    account = EndUserLink.objects.get(app=app).connection.account
    assert account == {"id": "7", "label": "********"}
