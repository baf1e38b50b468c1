from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from apps.accounts.models import AccessKey, Organization, Project
from apps.accounts.selectors import access_key_authenticate
from apps.connect.models import EndUserLink
from apps.connections.models import Connection
from apps.deployments.models import App, Deployment
from apps.workflows.models import Requirement, Workflow, WorkflowVersion

KEY_RE = re.compile(r"dynamiq_acc_[A-Za-z0-9]{64}")
MODELS = (Organization, Project, Connection, Workflow, Requirement, WorkflowVersion, App, Deployment, EndUserLink)


def run_demo() -> str:
    out = StringIO()
    call_command("demo", stdout=out, stderr=StringIO())
    return out.getvalue()


def counts() -> dict[str, int]:
    return {m.__name__: m.objects.count() for m in MODELS} | {"users": get_user_model().objects.count()}


def test_demo_seeds_everything_and_is_idempotent(db):
    first = run_demo()
    after_first = counts()
    second = run_demo()
    assert counts() == after_first
    assert AccessKey.objects.count() == 2  # each run prints a new key

    assert after_first == {"Organization": 1, "Project": 1, "Connection": 3, "Workflow": 1, "Requirement": 1,
                           "WorkflowVersion": 2, "App": 1, "Deployment": 2, "EndUserLink": 2, "users": 1}
    keys = [KEY_RE.findall(first), KEY_RE.findall(second)]
    assert len(set(keys[0])) == 1 and len(set(keys[1])) == 1 and keys[0] != keys[1]
    for found in keys:
        assert access_key_authenticate(raw_key=found[0]).project.name == "Demo"

    app = App.objects.get(name="Invoice bot")
    assert app.access_type == "private" and app.current_deployment is not None
    assert app.hostname in second and f"/apps/{app.id}/" in second
    assert "/v1/requirements/status?user_id=user-42" in second and "/v1/runs" in second
    assert '\\"user_id\\": \\"user-43\\"' not in second and '"user_id": "user-43"' in second
    assert "development" in first.lower() and "/admin/" in first

    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("admin")

    links = EndUserLink.objects.filter(app=app).select_related("connection")
    assert {link.user_id for link in links} == {"user-42", "user-43"}
    assert len({link.connection.config["api_key"] for link in links}) == 2
    shared = Connection.objects.get(name="demo-billing-shared", app__isnull=True)
    assert shared.type == "http_api_key" and shared.config["url"].endswith("/demo-upstream")
    definition = app.current_deployment.workflow_version.definition
    node_ids = [n["id"] for n in definition["nodes"]]
    assert node_ids == ["input", "shared_invoices", "my_invoices", "summary", "output"]


def test_demo_does_not_touch_an_existing_admin_user(db, django_user_model):
    django_user_model.objects.create_superuser("admin", "ops@example.com", "a-real-password")
    out = run_demo()
    assert "already exists" in out
    assert django_user_model.objects.get(username="admin").check_password("a-real-password")


def test_demo_key_works_on_the_app_host(db, settings):
    out = run_demo()
    key = KEY_RE.search(out).group(0)
    app = App.objects.get(name="Invoice bot")
    client = Client()
    response = client.get("/v1/requirements/status", {"user_id": "user-42"}, HTTP_HOST=app.hostname,
                          HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "complete"
    response = client.get("/v1/requirements/status", {"user_id": "user-42"}, HTTP_HOST=app.hostname)
    assert response.status_code == 401


def test_demo_runs_end_to_end_with_per_user_credentials(transactional_db, live_server, settings):
    """The printed curl examples work: the demo upstream (served by the platform in DEBUG) sees each user's key."""
    settings.PLATFORM_URL = live_server.url
    out = run_demo()
    key = KEY_RE.search(out).group(0)
    app = App.objects.get(name="Invoice bot")
    client = Client()
    accounts = {}
    for user_id in ("user-42", "user-43"):
        response = client.post("/v1/runs", {"input": {"question": "unpaid"}, "user_id": user_id},
                               content_type="application/json", HTTP_HOST=app.hostname, HTTP_AUTHORIZATION=f"Bearer {key}")
        assert response.status_code == 200, response.content
        run = response.json()
        assert run["status"] == "completed", run
        accounts[user_id] = run["output"]["my_account"]
        assert run["output"]["shared_account"].startswith("acct_")
    assert accounts["user-42"] != accounts["user-43"]
    response = client.post("/v1/runs", {"input": {"question": "unpaid"}, "user_id": "user-99"},
                           content_type="application/json", HTTP_HOST=app.hostname, HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 409 and response.json()["error"]["code"] == "requirements_unsatisfied"


def test_demo_refuses_with_debug_off(db, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="refuses to run with DEBUG=false"):
        run_demo()
    assert counts() == {name: 0 for name in (*(m.__name__ for m in MODELS), "users")}


def test_the_demo_app_is_an_mcp_server_and_proxies_as_each_user(transactional_db, live_server, settings):
    """SPEC 14 from a fresh `make run`: the printed proxy and MCP-session commands work on the demo App."""
    settings.PLATFORM_URL = live_server.url
    out = run_demo()
    key = KEY_RE.search(out).group(0)
    app = App.objects.get(name="Invoice bot")
    assert app.mcp_enabled and "/v1/mcp/sessions" in out and "/v1/proxy/billing/" in out
    client = Client(HTTP_HOST=app.hostname, HTTP_AUTHORIZATION=f"Bearer {key}")
    accounts = {}
    for user_id in ("user-42", "user-43"):
        answer = client.get("/v1/proxy/billing/invoices", {"user_id": user_id})  # streamed
        assert answer.status_code == 200
        accounts[user_id] = json.loads(b"".join(answer.streaming_content))["account"]
    assert accounts["user-42"] != accounts["user-43"]
    session = client.post("/v1/mcp/sessions", {"user_id": "user-42"}, content_type="application/json")
    assert session.status_code == 201, session.content
    initialize = Client(HTTP_HOST=app.hostname).post(
        "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                 "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        content_type="application/json", HTTP_ACCEPT="application/json, text/event-stream",
        HTTP_AUTHORIZATION=f"Bearer {session.json()['token']}")
    assert initialize.status_code == 200, initialize.content
