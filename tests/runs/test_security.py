"""Secrets stay radioactive on the run path: masked in outputs, events and errors, absent from logs;
the SSRF guard holds for runs when it is on."""

import logging

import pytest

from apps.runs.models import Run
from tests import factories
from tests.conftest import assert_no_canary
from tests.support.http_stub import HttpStub, StubResponse

pytestmark = pytest.mark.django_db


def post_run(client, app, key, **body):
    return client.post(f"/apps/{app.id}/v1/runs", {"input": {"question": "q"}, **body}, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {key}")


def test_echoed_secrets_are_masked_everywhere_and_never_logged(client, project, owner_key, upstream, caplog):
    caplog.set_level(logging.DEBUG)
    secret = factories.CANARIES["header_secret"]
    connection = factories.make_connection(project, name="hdr", type="http", config={
        "url": upstream.url, "headers": {"X-Api-Key": secret, "Accept": "application/json"}, "params": {"token": secret},
    })
    workflow = factories.make_workflow(project, "echo")
    version = factories.make_version(workflow, factories.definition(
        factories.http_node("echo", ref={"id": str(connection.id)}, url=f"{upstream.url}/echo"),
        output={"everything": "{{ nodes.echo.output }}"},
    ))
    app = factories.make_app(project, name="Echo", version=version)
    response = post_run(client, app, owner_key)
    assert response.status_code == 200
    assert upstream.requests[0].headers["X-Api-Key"] == secret  # the upstream did get the credential
    body = response.json()
    assert body["output"]["everything"]["body"]["headers"]["X-Api-Key"] == "********"
    run = Run.objects.get(id=body["id"])
    stored = str(run.output) + str(run.nodes) + str(list(run.events.values_list("data", flat=True)))
    assert "********" in stored
    assert_no_canary(response.content)
    assert_no_canary(stored)
    assert_no_canary("\n".join(record.getMessage() for record in caplog.records))


def test_base64_and_url_encoded_echoes_are_masked(client, project, owner_key):
    import base64
    from urllib.parse import quote

    secret = factories.CANARIES["shared_api_key"] + "/+="

    def leaky(request):
        return StubResponse(200, {"b64": base64.b64encode(secret.encode()).decode(), "url": quote(secret, safe="")})

    with HttpStub(leaky) as stub:
        connection = factories.make_connection(project, name="leaky", config={"url": stub.url, "api_key": secret})
        workflow = factories.make_workflow(project, "leaky")
        version = factories.make_version(workflow, factories.definition(
            factories.http_node("leak", ref={"id": str(connection.id)}, url=stub.url)))
        app = factories.make_app(project, name="Leaky", version=version)
        response = post_run(client, app, owner_key)
    assert response.json()["output"]["result"] == {"b64": "********", "url": "********"}


@pytest.mark.parametrize("target", ["http://127.0.0.1:9/", "http://[::1]:9/", "http://169.254.169.254/latest/meta-data",
                                    "http://10.0.0.1/", "http://localhost:9/"])
def test_runs_cannot_reach_private_addresses_with_the_guard_on(client, project, owner_key, settings, target):
    settings.ALLOW_PRIVATE_NETWORK_TARGETS = False
    workflow = factories.make_workflow(project, "ssrf")
    version = factories.make_version(workflow, factories.definition(factories.http_node("fetch", ref=None, url=target)))
    app = factories.make_app(project, name="SSRF", version=version)
    response = post_run(client, app, owner_key)
    assert response.status_code == 200
    node = response.json()["nodes"]["fetch"]
    assert node["status"] == "failure"
    assert node["error"]["type"] == "target_not_allowed"


def test_error_on_node_failure_fails_the_request_without_leaking(client, project, owner_key):
    with HttpStub(lambda r: StubResponse(500, {"echo": r.headers.get("Authorization")})) as stub:
        connection = factories.make_connection(project, name="boom", config={"url": stub.url, "api_key": factories.CANARIES["shared_api_key"]})
        workflow = factories.make_workflow(project, "boom")
        version = factories.make_version(workflow, factories.definition(
            factories.http_node("boom", ref={"id": str(connection.id)}, url=stub.url)))
        app = factories.make_app(project, name="Boom", version=version)
        response = post_run(client, app, owner_key, error_on_node_failure=True)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "node_failed"
    assert error["details"]["node_id"] == "boom" and error["details"]["type"] == "http_error"
    run = Run.objects.get(id=error["details"]["run_id"])
    assert run.status == "failed" and run.nodes["output"]["status"] == "skipped"
    assert_no_canary(response.content)
