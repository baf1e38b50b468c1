"""A populated platform for the admin tests (tests/*/test_admin.py): one object (at least) of every model, secrets set to
canaries. The conftest of each folder with admin tests imports the fixtures (operator, operator_client, world)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.utils import timezone

from apps.accounts.services import access_key_create
from apps.connect.models import ConnectFlow
from apps.connect.services import connect_token_claim_for_page
from apps.connect.tokens import hosted_page_url
from apps.connect.tokens import mint as mint_connect_token
from apps.connections.models import Connection, OAuthState
from apps.connections.services import connection_create, oauth_provider_create
from apps.credentials.models import CredentialAccess
from apps.deployments.services import deploy
from apps.runs.models import CallbackDelivery, File, Run, RunEvent
from apps.scheduler.services import job_run_if_due
from apps.webhooks.models import WebhookDelivery
from apps.webhooks.services import webhook_create
from tests import factories
from tests.factories import CANARIES

# Secrets of this module's own objects, scanned for beside factories.CANARIES.
CALLBACK_TOKEN = "canary-callback-bearer-9a8b7c6d5e"
CODE_VERIFIER = "canary-pkce-verifier-1f2e3d4c5b"


@pytest.fixture
def operator(db):
    """A superuser: the platform's operator."""
    return get_user_model().objects.create_superuser("operator", "operator@example.com", "pw-operator")


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@dataclass
class World:
    project: object
    provider: object
    connections: dict[str, Connection]
    workflow: object
    requirement: object
    v1: object
    v2: object
    app: object
    links: dict[str, object]
    run: object
    raw_key: str
    app_secret: str
    secrets: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def world(project, settings, tmp_path) -> World:
    settings.MEDIA_ROOT = tmp_path / "media"
    provider = oauth_provider_create(
        project=project, name="Acme SSO", authorize_url="https://sso.example.com/authorize",
        token_url="https://sso.example.com/token", client_id="acme-client", client_secret=CANARIES["client_secret"],
        scopes=["invoices.read"],
    )
    connections = {
        "http_api_key": factories.make_connection(project),
        "http": factories.make_connection(
            project, name="raw-http", type="http",
            config={"url": "https://api.example.com", "headers": {"Authorization": f"Token {CANARIES['header_secret']}",
                                                                   "Accept": "application/json"}},
        ),
        "openai": factories.make_connection(project, name="llm", type="openai",
                                            config={"api_key": CANARIES["openai_key"]}),
        "postgresql": factories.make_connection(
            project, name="warehouse", type="postgresql",
            config={"host": "db.example.com", "database": "dw", "user": "reader", "password": CANARIES["pg_password"]},
        ),
        "oauth2": connection_create(
            project=project, name="crm", type="oauth2", provider=provider, actor="test",
            config={"url": "https://crm.example.com", "access_token": CANARIES["access_token"],
                    "refresh_token": CANARIES["refresh_token"], "expires_at": int(time.time()) + 3600},
        ),
    }
    workflow = factories.make_workflow(project)
    requirement = factories.make_requirement(workflow)
    shared = connections["http_api_key"]
    v1 = factories.make_version(workflow, factories.definition(
        factories.http_node("invoices", ref={"id": str(shared.id)}, url="https://billing.example.com/invoices"),
    ))
    v2 = factories.make_version(workflow, factories.definition(
        factories.http_node("mine", ref={"requirement": str(requirement.id)}, url="https://billing.example.com/invoices"),
    ))
    app = factories.make_app(project, version=v1)
    app_secret = app.callback_signing_secret
    deploy(app=app, version=v2, actor="test")
    links = {
        user: factories.link_end_user(app, requirement, user, {"url": "https://billing.example.com",
                                                                "api_key": CANARIES[f"{user.replace('-', '')}_api_key"]})
        for user in ("user-42", "user-43")
    }
    _, raw_key = access_key_create(organization=project.organization, project=project, name="ci")
    now = timezone.now()
    run = Run.objects.create(
        app=app, deployment=app.current_deployment, workflow_version=v2, user_id="user-42", input={"question": "q"},
        output={"result": "ok"}, status=Run.Status.COMPLETED, started_at=now, ended_at=now + timedelta(milliseconds=12),
        nodes={"mine": {"status": "success"}},
    )
    RunEvent.objects.create(run=run, sequence=1, type="run.created", data={"id": str(run.id)}, timestamp=now)
    RunEvent.objects.create(run=run, sequence=2, type="run.completed", data={"output": {"result": "ok"}}, timestamp=now)
    CallbackDelivery.objects.create(run=run, url="https://hooks.example.com/done",
                                    auth={"type": "bearer", "token": CALLBACK_TOKEN}, metadata={"order": 7})
    upload = File(app=app, name="invoice.pdf", size=5, mime_type="application/pdf")
    upload.file.save("invoice.pdf", ContentFile(b"%PDF-"), save=True)
    CredentialAccess.objects.create(
        requester=CredentialAccess.Requester.IN_PROCESS, run_id=run.id, app=app, user_id="user-42",
        connection_ids=[str(shared.id)], requirement_ids=[str(requirement.id)], outcome=CredentialAccess.Outcome.RESOLVED,
    )
    from apps.proxy.models import ProxyCall

    ProxyCall.objects.create(
        created_at=now, app=app, user_id="user-42", target=requirement.name, requirement_id=requirement.id,
        method="GET", path="invoices/7", status=200, outcome=ProxyCall.Outcome.COMPLETED, latency_ms=3.2, duration_ms=4.1,
        bytes_sent=512,
    )
    OAuthState.objects.create(
        connection=connections["oauth2"], state_digest="d" * 64, code_verifier=CODE_VERIFIER,
        redirect_uri="http://testserver/connect/oauth2/callback", expires_at=now + timedelta(minutes=10),
    )
    # A reconnect of user-42 waiting for the App's confirmation: its new config (a secret) kept aside.
    ConnectFlow.objects.create(
        app=app, user_id="user-42", requirement=requirement, connection=links["user-42"].connection,
        kind=ConnectFlow.Kind.RECONNECT, expires_at=now + timedelta(minutes=10),
        pending_config={"url": "https://billing.example.com", "api_key": CANARIES["user43_api_key"]},
    )
    connect_token, connect_claims = mint_connect_token(app_id=str(app.id), user_id="user-42")
    connect_token_claim_for_page(claims=connect_claims)  # a used connect link (UsedConnectToken)
    job_run_if_due("retention.connect_tokens")  # a periodic job that ran (ScheduledJob)
    # A webhook and a delivery whose event carries a connect link: the admin shows neither the secret nor the link.
    webhook = webhook_create(project=project, url="http://127.0.0.1:9/hooks", events=["*"])
    WebhookDelivery.objects.create(
        endpoint=webhook, event_id="evt_admin", event_type="requirement.unsatisfied", status="dead",
        body=json.dumps({"type": "requirement.unsatisfied", "id": "evt_admin", "data": {
            "user_id": "user-42", "connect_url": hosted_page_url(connect_token)}}),
    )
    secrets = {**CANARIES, "connect_token": connect_token, "callback_token": CALLBACK_TOKEN, "code_verifier": CODE_VERIFIER, "raw_access_key": raw_key,
               "app_callback_secret": app_secret, "webhook_secret": webhook.secret}
    return World(project=project, provider=provider, connections=connections, workflow=workflow, requirement=requirement,
                 v1=v1, v2=v2, app=app, links=links, run=run, raw_key=raw_key, app_secret=app_secret, secrets=secrets)


def assert_no_secret(text: str | bytes, secrets: dict[str, str]) -> None:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    leaked = [name for name, value in secrets.items() if value in text]
    assert not leaked, f"secret(s) leaked: {leaked}"


def changelist_action(client, url: str, action: str, pks, **extra):
    return client.post(url, {"action": action, "_selected_action": [str(pk) for pk in pks], **extra})
