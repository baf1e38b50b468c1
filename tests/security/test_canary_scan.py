"""The canary scan finds what it promises to find (tests/support/canary.py).

Each encoded form is fed to a fresh scanner; then each channel (response body, header, streamed chunk,
log record, stored run event, worker log) is made to leak a freshly stored secret on purpose, and the
hit is taken back from the running test with `captured_hits()` so the test itself passes.
"""

from __future__ import annotations

import base64
import logging
import secrets

import pytest
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path

from apps.runs.models import Run, RunEvent
from tests import factories
from tests.support import canary

SECRET = "sk-live-Canary+Probe/42=zz"  # has the characters that make url-encoding and base64 variants differ


@pytest.mark.parametrize("form", sorted(canary.forms_of(SECRET)))
def test_every_form_of_a_secret_is_found_inside_other_text(form):
    scanner = canary.Scanner()
    scanner.add(SECRET, "connection c1 field api_key")
    text = f'{{"prefix": "xx", "value": "{canary.forms_of(SECRET)[form]}", "suffix": 1}}'

    assert scanner.find(text), form
    assert not scanner.find(text.replace(canary.forms_of(SECRET)[form], "********"))


@pytest.mark.parametrize("prefix", ["", "u", "us", "user:"])
def test_base64_is_found_whatever_bytes_precede_the_secret(prefix):
    """Basic auth is base64(user:secret): the secret is at any byte alignment inside the blob."""
    scanner = canary.Scanner()
    scanner.add(SECRET, "origin")
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        blob = encode(f"{prefix}{SECRET}!tail".encode()).decode()

        assert scanner.find(f"Authorization: Basic {blob}"), (prefix, encode)


def test_case_changed_forms_and_the_origin_are_reported():
    scanner = canary.Scanner()
    scanner.add(SECRET, "connection c1 field api_key")

    assert scanner.find(SECRET.swapcase()) == [("connection c1 field api_key", "raw", canary._preview(SECRET))]


def test_short_and_filler_values_are_not_tracked():
    scanner = canary.Scanner()
    scanner.add("short", "a")
    scanner.add("0" * 64, "b")

    assert scanner.secrets == {}


def test_schema_words_are_not_tracked_but_secrets_that_contain_words_are():
    # The schema fuzzer stores names it drew from the API document ("page_size") as client secrets.
    scanner = canary.Scanner()
    scanner.add("page_size", "fuzzed client_secret")
    scanner.add("apps_rollback", "fuzzed client_secret")
    scanner.add("my_secret_key_42", "c")
    scanner.add("Page_Size_Token", "d")

    assert set(scanner.secrets) == {"my_secret_key_42", "Page_Size_Token"}


def test_forms_per_secret():
    # raw, upper, lower, url-encoded, hex x2, base64 std/urlsafe x padded/unpadded, json-escaped,
    # base64 std/urlsafe at byte alignments 0, 1, 2.
    assert len(canary.forms_of(SECRET)) == 17


def test_connection_secrets_come_from_the_type_registry():
    config = {"url": "https://api.example.com", "headers": {"X-Honeycomb-Team": "hc-team-0123456789",
                                                         "Accept": "application/json", "X-Api-Key": "k-123456789"},
              "params": {"page": "1"}, "method": "GET"}

    found = dict(canary.connection_secrets("http", config))

    assert found == {"headers.X-Honeycomb-Team": "hc-team-0123456789", "headers.X-Api-Key": "k-123456789"}
    assert dict(canary.connection_secrets("http_api_key", {"url": "https://x.example", "api_key": "abcdefgh12"})) == {
        "api_key": "abcdefgh12"}


# ------------------------------------------------------------------------------------ channels, end to end


def _fresh_secret() -> str:
    return f"canary-scan-probe-{secrets.token_hex(8)}"


def _leaky_body(request):
    return HttpResponse(f"here it is: {request.GET['v']}")


def _leaky_header(request):
    response = HttpResponse("nothing in the body")
    response["X-Debug"] = base64.b64encode(request.GET["v"].encode()).decode()
    return response


def _leaky_stream(request):
    return StreamingHttpResponse(iter(["event: a\n\n", f"data: {request.GET['v'].upper()}\n\n"]))


urlpatterns = [
    path("leak/body", _leaky_body),
    path("leak/header", _leaky_header),
    path("leak/stream", _leaky_stream),
]


@pytest.fixture
def stored_secret(project):
    if not canary._enabled():
        pytest.skip("RCP_CANARY=0: the scan is switched off (cost measurement)")
    value = _fresh_secret()
    connection = factories.make_connection(project, name="probe", config={"url": "https://x.example", "api_key": value})
    assert canary.SCANNER.secrets[value] == f"connection {connection.pk} field api_key"
    return value, connection


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("route,form", [("body", "raw"), ("header", "base64-std"), ("stream", "raw")])
def test_a_leaking_response_is_a_hit_naming_origin_and_place(client, stored_secret, route, form):
    value, connection = stored_secret

    with canary.captured_hits() as hits:
        response = client.get(f"/leak/{route}", {"v": value})
        if response.streaming:
            b"".join(response.streaming_content)

    assert [h.origin for h in hits] == [f"connection {connection.pk} field api_key"]
    assert f"/leak/{route}" in hits[0].where
    assert hits[0].form.startswith(form)


def test_a_leaking_log_record_is_a_hit(stored_secret):
    value, _ = stored_secret

    with canary.captured_hits() as hits:
        logging.getLogger("apps.runs").warning("upstream said %s", value.encode().hex())

    assert len(hits) == 1 and hits[0].where == "log record apps.runs WARNING"


def test_a_stored_event_with_a_secret_is_a_hit(stored_secret, project):
    value, _ = stored_secret
    version = factories.make_version(factories.make_workflow(project), factories.definition())
    run = Run.objects.create(app=factories.make_app(project, name="probe"), workflow_version=version, mode=Run.Mode.SYNC)
    event = RunEvent.objects.create(run=run, sequence=1, type="node.finished", data={"body": value},
                                    timestamp=run.created_at)

    with canary.captured_hits() as hits:
        canary.scan_database()
    where = f"RunEvent {event.pk} data"
    event.delete()  # or the scan after this test would (rightly) fail it

    assert where in [h.where for h in hits]


def test_a_worker_log_with_a_secret_is_a_hit(stored_secret, tmp_path):
    value, _ = stored_secret
    (tmp_path / "celery.log").write_text(f"[INFO] resolved {value}\n")

    with canary.captured_hits() as hits:
        canary.scan_log_files(tmp_path)
    (tmp_path / "celery.log").unlink()

    assert [h.where for h in hits] == ["worker log celery.log"]
