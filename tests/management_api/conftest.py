"""Actors and a populated project for the management API tests.

`owner_key` acts in the project "Acme / Billing"; `org_key` is Acme's organization-wide key;
`teammate_key` belongs to "Acme / Support" (same organization, other project); `outsider_key` to Globex.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from apps.connect.models import EndUserLink
from apps.connections.models import Connection, OAuthProvider
from apps.connections.services import connection_create, oauth_provider_create
from apps.deployments.models import App, Deployment
from apps.webhooks.models import WebhookDelivery, WebhookEndpoint
from apps.webhooks.services import webhook_create
from apps.workflows.models import Requirement, Workflow, WorkflowVersion
from tests import factories
from tests.factories import CANARIES


def client_for(key: str | None) -> APIClient:
    client = APIClient()
    if key:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def owner(owner_key) -> APIClient:
    return client_for(owner_key)


@pytest.fixture
def org(org_key) -> APIClient:
    return client_for(org_key)


@pytest.fixture
def teammate(teammate_key) -> APIClient:
    return client_for(teammate_key)


@pytest.fixture
def outsider(outsider_key) -> APIClient:
    return client_for(outsider_key)


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@dataclass
class World:
    project: object
    api_connection: Connection
    http_connection: Connection
    openai_connection: Connection
    pg_connection: Connection
    oauth_connection: Connection
    provider: OAuthProvider
    workflow: Workflow
    requirement: Requirement
    version: WorkflowVersion
    app: App
    deployment: Deployment
    link: EndUserLink
    webhook: WebhookEndpoint
    webhook_delivery: WebhookDelivery


@pytest.fixture
def world(project) -> World:
    """One of everything in the owner's project, every secret a canary."""
    api = factories.make_connection(project)  # http_api_key with CANARIES["shared_api_key"]
    http = connection_create(
        project=project, name="headers-api", type="http", actor="test",
        config={"url": "https://h.example.com", "headers": {"X-Api-Key": CANARIES["header_secret"], "Accept": "json"}},
    )
    openai = connection_create(project=project, name="llm", type="openai", actor="test",
                               config={"api_key": CANARIES["openai_key"]})
    pg = connection_create(
        project=project, name="warehouse", type="postgresql", actor="test",
        config={"host": "db.example.com", "database": "w", "user": "reader", "password": CANARIES["pg_password"]},
    )
    provider = oauth_provider_create(
        project=project, name="crm", authorize_url="https://crm.example.com/authorize",
        token_url="https://crm.example.com/token", client_id="platform-client",
        client_secret=CANARIES["client_secret"], scopes=["read"],
    )
    oauth = connection_create(
        project=project, name="crm-account", type="oauth2", actor="test", provider=provider,
        config={"url": "https://crm.example.com", "access_token": CANARIES["access_token"],
                "refresh_token": CANARIES["refresh_token"]},
    )
    workflow = factories.make_workflow(project)
    requirement = factories.make_requirement(workflow)
    version = factories.make_version(workflow, factories.definition(
        factories.http_node("shared", ref={"id": str(api.id)}, url="https://billing.example.com/x"),
        factories.http_node("mine", ref={"requirement": str(requirement.id)}, url="https://billing.example.com/y",
                            depends_on=("shared",)),
    ))
    app = factories.make_app(project, version=version)
    link = factories.link_end_user(app, requirement, "user-42",
                                   {"url": "https://billing.example.com", "api_key": CANARIES["user42_api_key"]})
    webhook = webhook_create(project=project, url="http://127.0.0.1:9/hooks", events=["*"], app_ids=[app.id])
    webhook_delivery = WebhookDelivery.objects.create(endpoint=webhook, event_id="evt_world", event_type="link.created",
                                                      body='{"type":"link.created"}', status="dead")
    return World(project=project, api_connection=api, http_connection=http, openai_connection=openai,
                 pg_connection=pg, oauth_connection=oauth, provider=provider, workflow=workflow,
                 requirement=requirement, version=version, app=app, deployment=app.current_deployment, link=link,
                 webhook=webhook, webhook_delivery=webhook_delivery)
