from __future__ import annotations

from dataclasses import dataclass

import pytest

from apps.accounts.models import Project
from apps.connect import tokens
from apps.connections.models import OAuthProvider
from apps.connections.services import oauth_provider_create
from apps.deployments.models import App
from apps.workflows.models import Requirement
from apps.workflows.services import requirement_create
from tests import factories
from tests.connect.lifecycle_support import events  # noqa: F401  (fixture: connection_event recorder)
from tests.support.admin import operator, operator_client, world  # noqa: F401  (for test_admin.py)

CLIENT_APP_ORIGIN = "https://client.example.com"


@dataclass
class ConnectSetup:
    project: Project
    app: App
    billing: Requirement  # http_api_key
    crm: Requirement  # oauth2
    provider: OAuthProvider


def build_connect_setup(project: Project, *, app_name: str = "Invoice bot", provider_base: str = "https://auth.example.com",
                        token_url: str | None = None, revoke_url: str = "", origins=(CLIENT_APP_ORIGIN,),
                        client_id: str = "platform-client", client_secret: str | None = None,
                        access_type: str = App.AccessType.PRIVATE, workflow_name: str = "invoices",
                        billing_url: str = "https://billing.example.com", crm_url: str = "https://crm.example.com",
                        ) -> ConnectSetup:
    provider = oauth_provider_create(
        project=project, name=f"CRM for {app_name}", authorize_url=f"{provider_base}/o/authorize/",
        token_url=token_url or f"{provider_base}/o/token/", client_id=client_id,
        client_secret=client_secret if client_secret is not None else factories.CANARIES["client_secret"],
        scopes=["read"], revoke_url=revoke_url,
    )
    workflow = factories.make_workflow(project, workflow_name)
    billing = factories.make_requirement(workflow, name="billing", title="Your billing account")
    crm = requirement_create(
        workflow=workflow, name="crm", title="Your CRM account", description="Read your contacts.",
        spec={"connection_type": "oauth2", "provider_id": str(provider.id), "scopes": ["read"],
              "config": {"url": crm_url}},
    )
    version = factories.make_version(workflow, factories.definition(
        factories.http_node("invoices", ref={"requirement": str(billing.id)}, url=f"{billing_url}/invoices",
                            params={"q": "{{ input.question }}"}),
        factories.http_node("contacts", ref={"requirement": str(crm.id)}, url=f"{crm_url}/contacts",
                            depends_on=("invoices",)),
    ))
    app = factories.make_app(project, name=app_name, version=version, allowed_redirect_origins=list(origins),
                             access_type=access_type)
    return ConnectSetup(project=project, app=app, billing=billing, crm=crm, provider=provider)


@pytest.fixture
def setup(project) -> ConnectSetup:
    return build_connect_setup(project)


@pytest.fixture
def other_setup(teammate_project) -> ConnectSetup:
    """Another App (another project) with its own requirements."""
    return build_connect_setup(teammate_project, app_name="Support bot", workflow_name="support")


def connect_token(app: App, user_id: str, redirect_url: str = "") -> str:
    token, _ = tokens.mint(app_id=str(app.id), user_id=user_id, redirect_url=redirect_url)
    return token


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def billing():
    """A billing API on loopback that accepts one key (tests/connect/link_fields_support.py)."""
    from tests.connect.link_fields_support import billing_api
    from tests.support.http_stub import HttpStub

    with HttpStub(billing_api) as stub:
        yield stub
