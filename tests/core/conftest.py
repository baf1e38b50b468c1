from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.connect.models import ConnectFlow
from apps.connections.models import Connection, OAuthState
from apps.connections.services import connection_create, oauth_provider_create
from apps.core.fields import ENCRYPTED_FIELDS
from apps.runs.models import CallbackDelivery, Run
from apps.webhooks.services import webhook_create
from tests import factories
from tests.support.admin import operator, operator_client, world  # noqa: F401  (for test_admin.py)

# Canaries for the columns CANARIES has no natural entry for.
CODE_VERIFIER = "canary-code-verifier-0d1e2f3a4b5c6d7e8f"

# Every EncryptedJSONField in the project. A new one must be added here (and to `stored_secrets`), or
# test_every_encrypted_field_is_covered fails: no credential column goes unchecked.
EXPECTED_ENCRYPTED_FIELDS = {
    "connect.ConnectFlow.pending_config",
    "connections.Connection.config",
    "connections.OAuthProvider.client_secret",
    "connections.OAuthState.code_verifier",
    "deployments.App.callback_signing_secret",
    "runs.CallbackDelivery.auth",
    "webhooks.WebhookEndpoint.secret",
}


def field_label(f) -> str:
    return f"{f.model._meta.label}.{f.name}"


@dataclass
class StoredSecrets:
    """One or more rows in every encrypted column, each holding a canary secret."""

    secrets: dict[str, str]  # name -> secret value that must never appear in plaintext
    objects: dict[str, object] = field(default_factory=dict)


def read_all_encrypted() -> dict[tuple[str, str], object]:
    """{(field label, pk): decrypted value} through the ORM (values_list applies from_db_value)."""
    values = {}
    for f in ENCRYPTED_FIELDS:
        for pk, value in f.model.objects.values_list("pk", f.name):
            values[(field_label(f), str(pk))] = value
    return values


@pytest.fixture
def stored_secrets(project, canaries) -> StoredSecrets:
    c = canaries
    api = factories.make_connection(project)  # http_api_key with CANARIES["shared_api_key"]
    pg = connection_create(
        project=project, name="warehouse", type="postgresql", actor="test",
        config={"host": "db.example.com", "database": "sales", "user": "reporter", "password": c["pg_password"]},
    )
    llm = connection_create(project=project, name="llm", type="openai", config={"api_key": c["openai_key"]}, actor="test")
    http = connection_create(
        project=project, name="partner", type="dynamiq.connections.Http", actor="test",
        config={"url": "https://partner.example.com", "headers": {"Authorization": f"Bearer {c['header_secret']}"}},
    )
    provider = oauth_provider_create(
        project=project, name="acme-idp", authorize_url="https://idp.example.com/authorize",
        token_url="https://idp.example.com/token", client_id="client-123", client_secret=c["client_secret"],
    )
    crm = connection_create(
        project=project, name="crm", type="oauth2", config={"url": "https://crm.example.com"}, provider=provider,
        actor="test",
    )
    # Tokens as the authorization-code flow stores them.
    crm.config = {**crm.config, "access_token": c["access_token"], "refresh_token": c["refresh_token"], "expires_at": 0}
    crm.status = Connection.Status.ACTIVE
    crm.save(update_fields=["config", "status"])
    OAuthState.objects.create(
        connection=crm, state_digest="f" * 64, code_verifier=CODE_VERIFIER,
        redirect_uri="https://platform.example.com/oauth2/callback", expires_at=timezone.now() + timedelta(minutes=10),
    )

    workflow = factories.make_workflow(project)
    requirement = factories.make_requirement(workflow)
    version = factories.make_version(
        workflow,
        factories.definition(
            factories.http_node("shared", ref={"id": str(api.id)}, url="https://billing.example.com/invoices"),
            factories.http_node("mine", ref={"requirement": str(requirement.id)}, url="https://billing.example.com/me",
                                depends_on=("shared",)),
        ),
    )
    app = factories.make_app(project, version=version)
    factories.link_end_user(app, requirement, "user-42", {"url": "https://billing.example.com", "api_key": c["user42_api_key"]})
    linked = factories.link_end_user(app, requirement, "user-43", {"url": "https://billing.example.com",
                                                                   "api_key": c["user43_api_key"]})
    # A reconnect waiting for the App's confirmation keeps the new config aside (user verification).
    ConnectFlow.objects.create(
        app=app, user_id="user-43", requirement=requirement, connection=linked.connection, kind=ConnectFlow.Kind.RECONNECT,
        pending_config={"url": "https://billing.example.com", "api_key": c["user42_api_key"]},
        expires_at=timezone.now() + timedelta(minutes=10),
    )
    run = Run.objects.create(app=app, deployment=app.current_deployment, workflow_version=version, mode=Run.Mode.ASYNC)
    CallbackDelivery.objects.create(
        run=run, url="https://hooks.example.com/runs", auth={"type": "bearer", "token": c["access_token"]}
    )
    app.refresh_from_db()
    webhook = webhook_create(project=project, url="http://127.0.0.1:9/hooks", events=["*"])
    secrets = {**c, "code_verifier": CODE_VERIFIER, "callback_signing_secret": app.callback_signing_secret,
               "webhook_secret": webhook.secret}
    return StoredSecrets(
        secrets=secrets,
        objects={"api": api, "pg": pg, "llm": llm, "http": http, "provider": provider, "crm": crm, "app": app},
    )
