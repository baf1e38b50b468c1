"""SPEC §13 builder-fixed fields, verification at link time and account identity, through the connect API.

Upstreams are real HTTP servers on loopback (tests/support/http_stub.py) that accept one key and reject others.
"""

from __future__ import annotations

import pytest

from apps.connect import tokens
from apps.connect.models import EndUserLink
from apps.connections.models import Connection, ConnectionConfigChange
from apps.workflows.services import requirement_create
from tests import factories
from tests.conftest import assert_no_canary
from tests.connect.conftest import bearer, connect_token
from tests.connect.link_fields_support import BAD_KEY, GOOD_KEY, OPENAI_KEY, VERIFY, _world
from tests.support.http_stub import HttpStub, StubResponse

pytestmark = pytest.mark.django_db

def _link(api_client, app, requirement, config, *, user_id="user-42", expected_account=""):
    token, _ = tokens.mint(
        app_id=str(app.id), user_id=user_id, expected_account=expected_account)
    return api_client.post(f"/v1/connect/requirements/{requirement.id}/credentials",
                           {"type": "http_api_key", "config": config}, format="json", **bearer(token))


def _nothing_stored(app) -> None:
    assert Connection.objects.filter(app=app).count() == 0
    assert EndUserLink.objects.filter(app=app).count() == 0
    assert ConnectionConfigChange.objects.filter(connection__app=app).count() == 0


def test_it_links_with_only_the_secret_and_stores_the_fixed_fields(api_client, project, billing):
    app, requirement = _world(project, billing.url, verify=VERIFY)
    response = _link(api_client, app, requirement, {"api_key": GOOD_KEY})
    assert response.status_code == 201, response.content
    connection = EndUserLink.objects.get(app=app).connection
    assert connection.config == {"url": billing.url, "header": "X-Api-Key", "prefix": "", "api_key": GOOD_KEY}


def test_the_probe_applies_the_key_as_a_run_would(api_client, project, billing):
    app, requirement = _world(project, billing.url, verify=VERIFY)
    _link(api_client, app, requirement, {"api_key": GOOD_KEY})
    probe = billing.requests[-1]
    assert (probe.method, probe.path) == ("GET", "/v1/me")
    assert probe.headers["X-Api-Key"] == GOOD_KEY  # the fixed header, the fixed empty prefix


def test_it_records_the_account_from_the_probe_answer(api_client, project, billing):
    app, requirement = _world(project, billing.url, verify=VERIFY)
    _link(api_client, app, requirement, {"api_key": GOOD_KEY})
    connection = EndUserLink.objects.get(app=app).connection
    assert connection.account == {"id": "acct_1042", "label": "ada@example.com"}
    assert connection.last_verified_at is not None


def test_the_listing_says_what_is_asked_and_whose_account_is_linked(api_client, project, billing):
    app, requirement = _world(project, billing.url, verify=VERIFY)
    _link(api_client, app, requirement, {"api_key": GOOD_KEY})
    token = connect_token(app, "user-42")
    item = api_client.get("/v1/connect/requirements", **bearer(token)).json()["data"][0]
    assert [f["name"] for f in item["fields"]] == ["api_key"]
    assert item["account"] == {"id": "acct_1042", "label": "ada@example.com"}


def test_a_submitted_fixed_field_is_refused(api_client, project, billing):
    app, requirement = _world(project, billing.url, verify=VERIFY)
    response = _link(api_client, app, requirement, {"api_key": GOOD_KEY, "url": "https://attacker.example"})
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]["config"]) == {"url"}
    _nothing_stored(app)
    assert billing.requests == []  # refused before any probe


def test_a_rejected_key_is_credentials_invalid_and_nothing_is_stored(api_client, project, billing):
    app, requirement = _world(project, billing.url, verify=VERIFY)
    response = _link(api_client, app, requirement, {"api_key": BAD_KEY})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "credentials_invalid"
    _nothing_stored(app)


def test_an_upstream_echoing_the_key_does_not_leak_it(api_client, project, billing):
    app, requirement = _world(project, billing.url, verify=VERIFY)
    response = _link(api_client, app, requirement, {"api_key": BAD_KEY})
    assert BAD_KEY in billing.requests[-1].headers["X-Api-Key"]  # it was sent, and echoed in the 401 body
    assert_no_canary(response.content)


def test_a_failing_upstream_is_verification_failed_and_nothing_is_stored(api_client, project):
    with HttpStub(lambda request: StubResponse(500, {"error": f"boom {request.headers.get('X-Api-Key')}"})) as broken:
        app, requirement = _world(project, broken.url, verify=VERIFY)
        response = _link(api_client, app, requirement, {"api_key": GOOD_KEY})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "verification_failed"
    assert response.json()["error"]["details"] == {"status_code": 500}
    assert_no_canary(response.content)
    _nothing_stored(app)


def test_an_unexpected_status_is_verification_failed(api_client, project, billing):
    app, requirement = _world(project, billing.url, verify={**VERIFY, "path": "/v1/nothing-here"})
    response = _link(api_client, app, requirement, {"api_key": GOOD_KEY})
    assert response.json()["error"]["code"] == "verification_failed"
    _nothing_stored(app)


def test_an_answer_without_the_account_id_is_verification_failed(api_client, project, billing):
    verify = {**VERIFY, "account": {"id": "$.data.missing"}}
    app, requirement = _world(project, billing.url, verify=verify)
    response = _link(api_client, app, requirement, {"api_key": GOOD_KEY})
    assert response.json()["error"]["code"] == "verification_failed"
    _nothing_stored(app)


def test_a_blocked_target_is_verification_failed(api_client, project, billing, settings):
    app, requirement = _world(project, billing.url, verify=VERIFY)
    settings.ALLOW_PRIVATE_NETWORK_TARGETS = False  # loopback is not a public address
    response = _link(api_client, app, requirement, {"api_key": GOOD_KEY})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "verification_failed"
    assert billing.requests == []
    _nothing_stored(app)


def test_a_different_expected_account_is_refused(api_client, project, billing):
    app, requirement = _world(project, billing.url, verify=VERIFY)
    response = _link(api_client, app, requirement, {"api_key": GOOD_KEY}, expected_account="acct_9999")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "account_mismatch"
    _nothing_stored(app)


def test_the_expected_account_is_linked(api_client, project, billing):
    app, requirement = _world(project, billing.url, verify=VERIFY)
    response = _link(api_client, app, requirement, {"api_key": GOOD_KEY}, expected_account="acct_1042")
    assert response.status_code == 201, response.content


def test_an_expected_account_without_an_account_probe_is_refused(api_client, project, billing):
    app, requirement = _world(project, billing.url)  # no spec.verify: nothing says whose key it is
    response = _link(api_client, app, requirement, {"api_key": GOOD_KEY}, expected_account="acct_1042")
    assert response.json()["error"]["code"] == "account_mismatch"
    _nothing_stored(app)


def test_the_connect_token_api_accepts_an_expected_account(api_client, project, billing, owner_key):
    app, requirement = _world(project, billing.url, verify=VERIFY)
    response = api_client.post("/v1/connect/tokens", {"user_id": "user-42", "expected_account": "acct_9999"},
                               format="json", HTTP_HOST=app.hostname, HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 201, response.content
    linked = api_client.post(f"/v1/connect/requirements/{requirement.id}/credentials",
                             {"type": "http_api_key", "config": {"api_key": GOOD_KEY}}, format="json",
                             **bearer(response.json()["token"]))
    assert linked.json()["error"]["code"] == "account_mismatch"


def test_a_requirement_without_a_probe_links_unverified(api_client, project, billing):
    app, requirement = _world(project, billing.url)
    assert _link(api_client, app, requirement, {"api_key": BAD_KEY}).status_code == 201
    connection = EndUserLink.objects.get(app=app).connection
    assert connection.last_verified_at is None and connection.account is None
    assert billing.requests == []


def test_a_run_sends_the_key_to_the_fixed_origin(api_client, project, billing, owner_key):
    app, requirement = _world(project, billing.url, verify=VERIFY)
    assert _link(api_client, app, requirement, {"api_key": GOOD_KEY}).status_code == 201
    response = api_client.post("/v1/runs", {"input": {"question": "q"}, "user_id": "user-42"}, format="json",
                               HTTP_HOST=app.hostname, HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 200, response.content
    assert response.json()["output"]["output"] == {"invoices": [1, 2], "key_seen": True}
    assert billing.requests[-1].path == "/invoices"


def _openai_api(request):
    if request.path == "/v1/models" and request.headers.get("Authorization") == f"Bearer {OPENAI_KEY}":
        return StubResponse(200, {"data": [{"id": "gpt-test"}]})
    return StubResponse(401, {"error": {"message": "bad key"}})


def test_openai_is_verified_by_its_default_probe(api_client, project):
    with HttpStub(_openai_api) as llm:
        workflow = factories.make_workflow(project, "chat")
        requirement = requirement_create(workflow=workflow, name="llm", title="Your LLM", spec={
            "connection_type": "openai", "config": {"base_url": f"{llm.url}/v1"}})
        version = factories.make_version(workflow, factories.definition(
            {"id": "chat", "type": "llm", "depends_on": ["input"], "connection": {"requirement": str(requirement.id)},
             "config": {"model": "gpt-test", "prompt": "hi"}}))
        app = factories.make_app(project, name="Chat", version=version)
        token = connect_token(app, "user-42")
        url = f"/v1/connect/requirements/{requirement.id}/credentials"
        refused = api_client.post(url, {"type": "openai", "config": {"api_key": "sk-wrong-0000"}}, format="json",
                                  **bearer(token))
        linked = api_client.post(url, {"type": "openai", "config": {"api_key": OPENAI_KEY}}, format="json",
                                 **bearer(token))
    assert refused.json()["error"]["code"] == "credentials_invalid"
    assert linked.status_code == 201, linked.content
    assert [r.path for r in llm.requests] == ["/v1/models", "/v1/models"]
    assert EndUserLink.objects.get(app=app).connection.config["base_url"] == f"{llm.url}/v1"


def test_verify_false_skips_the_default_probe(api_client, project):
    workflow = factories.make_workflow(project, "chat")
    requirement = requirement_create(workflow=workflow, name="llm", title="Your LLM", spec={
        "connection_type": "openai", "config": {"base_url": "http://127.0.0.1:9/v1"}, "verify": False})
    version = factories.make_version(workflow, factories.definition(
        {"id": "chat", "type": "llm", "depends_on": ["input"], "connection": {"requirement": str(requirement.id)},
         "config": {"model": "gpt-test", "prompt": "hi"}}))
    app = factories.make_app(project, name="Chat", version=version)
    response = api_client.post(f"/v1/connect/requirements/{requirement.id}/credentials",
                               {"type": "openai", "config": {"api_key": OPENAI_KEY}}, format="json",
                               **bearer(connect_token(app, "user-42")))
    assert response.status_code == 201, response.content
