"""Request limits (SPEC.md section 12): JSON nested deeper than MAX_JSON_DEPTH is a 400, a body over
DATA_UPLOAD_MAX_MEMORY_SIZE a 413, on every API (App host, management, connect, internal), never a 500.
The limits are enforced by the shared parser and exception handler, so each test asserts on the envelope
and its code, not on timings."""

import pytest
from django.test import Client

from apps.connect.services import connect_token_create
from tests import factories
from tests.connect.conftest import build_connect_setup

pytestmark = pytest.mark.django_db

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"input": ' + b'{"a": ' * 100 + b"1" + b"}" * 100 + b"}"


def huge(settings) -> bytes:
    # A valid JSON object just over the limit (the default limit is 10 MB: this is the 11 MB case).
    return b'{"input": {"question": "' + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1024 * 1024) + b'"}}'


@pytest.fixture
def app(project):
    workflow = factories.make_workflow(project, "limits")
    version = factories.make_version(workflow, factories.definition(output={"q": "{{ input.question }}"}))
    return factories.make_app(project, name="Limits", version=version)


@pytest.fixture
def targets(app, project, owner_key):
    workflow = factories.make_workflow(project, "limits-versions")
    connect = build_connect_setup(project, app_name="Limits connect", workflow_name="limits-connect")
    requirement = connect.billing
    token, _, _ = connect_token_create(app=connect.app, user_id="user-1")
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {owner_key}"}
    return [
        (f"/apps/{app.id}/v1/runs", bearer),
        (f"/apps/{app.id}/", bearer),
        ("/v1/connections", bearer),
        (f"/v1/workflows/{workflow.id}/versions", bearer),
        (f"/v1/connect/requirements/{requirement.id}/credentials", {"HTTP_AUTHORIZATION": f"Bearer {token}"}),
        ("/internal/v1/credentials/resolve", {"HTTP_AUTHORIZATION": "Bearer system-token"}),
    ]


def _post(path, body, headers):
    return Client(raise_request_exception=False).post(path, body, content_type="application/json", **headers)


def _assert_envelope(response, status, code):
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response.json()["error"]["code"] == code


def test_deep_nesting_is_a_400_everywhere(targets, settings):
    settings.CREDENTIALS_API_TOKEN = "system-token"
    for path, headers in targets:
        _assert_envelope(_post(path, DEEP, headers), 400, "bad_request")


def test_nesting_past_max_json_depth_is_a_400_below_the_recursion_limit(app, owner_key, settings):
    settings.MAX_JSON_DEPTH = 64
    response = _post(f"/apps/{app.id}/v1/runs", DEEP_OBJECT, {"HTTP_AUTHORIZATION": f"Bearer {owner_key}"})
    _assert_envelope(response, 400, "bad_request")
    assert "deep" in response.json()["error"]["message"]
    settings.MAX_JSON_DEPTH = 200
    response = _post(f"/apps/{app.id}/v1/runs", DEEP_OBJECT, {"HTTP_AUTHORIZATION": f"Bearer {owner_key}"})
    assert response.status_code == 400 and "deep" not in response.json()["error"]["message"]  # the input's fault now


def test_an_oversized_body_is_a_413_everywhere(targets, settings):
    settings.CREDENTIALS_API_TOKEN = "system-token"
    body = huge(settings)
    for path, headers in targets:
        _assert_envelope(_post(path, body, headers), 413, "payload_too_large")


def test_an_oversized_form_on_a_plain_django_view_is_a_413(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = Client(raise_request_exception=False).post(
        "/connect/requirements/00000000-0000-0000-0000-000000000001/credentials", "api_key=" + "x" * 5000,
        content_type="application/x-www-form-urlencoded")
    _assert_envelope(response, 413, "payload_too_large")


def test_a_multipart_form_over_the_field_limit_is_a_413_not_a_500(app, owner_key, settings):
    """Multipart gets the upload allowance at the door; Django's own limit on its non-file fields
    (RequestDataTooBig, raised inside the parser) is mapped to 413 by the shared exception handler."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = Client(raise_request_exception=False).post(
        f"/apps/{app.id}/v1/runs", {"input": '{"question": "' + "x" * 5000 + '"}'},
        HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    _assert_envelope(response, 413, "payload_too_large")


def test_django_refusals_map_to_the_envelope_on_plain_views(rf):
    from django.core.exceptions import RequestDataTooBig, SuspiciousOperation

    from apps.core.views import bad_request

    assert bad_request(rf.get("/"), RequestDataTooBig("x")).status_code == 413
    assert bad_request(rf.get("/"), SuspiciousOperation("x")).status_code == 400


def test_a_body_within_the_limits_still_runs(app, owner_key):
    response = _post(f"/apps/{app.id}/v1/runs", b'{"input": {"question": "hi"}}', {"HTTP_AUTHORIZATION": f"Bearer {owner_key}"})
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("text", [rb"a\u0000b", rb"\ud800 alone", rb"x\udc00"])
def test_text_no_database_can_store_is_a_400_everywhere_not_a_500(targets, settings, text):
    """A NUL (PostgreSQL text and jsonb refuse it) or a lone surrogate (not UTF-8) only comes from a JSON escape;
    the INSERT failed with a 500 on PostgreSQL (found by the SPEC 14 review)."""
    settings.CREDENTIALS_API_TOKEN = "system-token"
    for path, headers in targets:
        _assert_envelope(_post(path, b'{"input": {"question": "' + text + b'"}}', headers), 400, "bad_request")
        _assert_envelope(_post(path, b'{"input": {"' + text + b'": 1}}', headers), 400, "bad_request")


def test_escaped_text_that_can_be_stored_still_runs(app, owner_key):
    """An escaped surrogate pair (an emoji), an escaped backslash before u0000, other escapes: all fine."""
    body = rb'{"input": {"question": "\ud83d\ude00 \\u0000 \u00e9 \n"}}'
    response = _post(f"/apps/{app.id}/v1/runs", body, {"HTTP_AUTHORIZATION": f"Bearer {owner_key}"})
    assert response.status_code == 200, response.content
    assert response.json()["output"] == {"q": "\U0001f600 \\u0000 \u00e9 \n"}
