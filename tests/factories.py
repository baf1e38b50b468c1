"""Small factories over the services: tests build state the way the product does."""

from __future__ import annotations

from typing import Any

from apps.accounts.models import Project
from apps.accounts.services import access_key_create, project_get_or_create
from apps.connect.models import EndUserLink
from apps.connections.models import Connection
from apps.connections.services import connection_create
from apps.deployments.models import App
from apps.deployments.services import app_create, deploy
from apps.workflows.models import Requirement, Workflow, WorkflowVersion
from apps.workflows.services import requirement_create, workflow_create, workflow_version_create

# Canary secrets: any of these found in a response, a page, an event or a log is a leak.
CANARIES = {
    "shared_api_key": "canary-shared-key-7f3a9c21e5",
    "user42_api_key": "canary-user42-key-b81d0e44aa",
    "user43_api_key": "canary-user43-key-c92e1f55bb",
    "pg_password": "canary-pg-password-d03f2066cc",
    "openai_key": "canary-openai-key-e14a3177dd",
    "client_secret": "canary-client-secret-f25b4288ee",
    "access_token": "canary-access-token-a36c5399ff",
    "refresh_token": "canary-refresh-token-b47d64aa00",
    "header_secret": "canary-header-secret-c58e75bb11",
}


def make_project(org: str = "Acme", name: str = "Billing") -> Project:
    return project_get_or_create(organization_name=org, project_name=name)


def make_key(project: Project, *, org_wide: bool = False, **kwargs) -> str:
    _, raw = access_key_create(organization=project.organization, project=None if org_wide else project, **kwargs)
    return raw


def make_connection(project: Project, *, name: str = "billing-api", type: str = "http_api_key",
                    config: dict[str, Any] | None = None) -> Connection:
    config = config or {"url": "https://billing.example.com", "api_key": CANARIES["shared_api_key"]}
    return connection_create(project=project, name=name, type=type, config=config, actor="test")


def make_workflow(project: Project, name: str = "invoices") -> Workflow:
    return workflow_create(project=project, name=name)


def make_requirement(workflow: Workflow, *, name: str = "billing", connection_type: str = "http_api_key",
                     title: str = "Your billing account") -> Requirement:
    return requirement_create(workflow=workflow, name=name, title=title, spec={"connection_type": connection_type})


def http_node(node_id: str, *, ref: dict | None, url: str, depends_on=("input",), **config) -> dict:
    node = {"id": node_id, "type": "http", "depends_on": list(depends_on), "config": {"method": "GET", "url": url, **config}}
    if ref is not None:
        node["connection"] = ref
    return node


def definition(*nodes: dict, output: dict[str, str] | None = None, input_fields: dict | None = None) -> dict:
    last = nodes[-1]["id"] if nodes else "input"
    return {
        "nodes": [
            {"id": "input", "type": "input",
             "fields": input_fields if input_fields is not None else {"question": {"type": "string", "required": True}}},
            *nodes,
            {"id": "output", "type": "output", "depends_on": [last],
             "fields": output or {"result": f"{{{{ nodes.{last}.output.body }}}}"}},
        ]
    }


def make_version(workflow: Workflow, definition_: dict) -> WorkflowVersion:
    return workflow_version_create(workflow=workflow, definition=definition_, actor="test")


def make_app(project: Project, *, name: str = "Invoice bot", version: WorkflowVersion | None = None, **kwargs) -> App:
    app = app_create(project=project, name=name, **kwargs)
    if version is not None:
        deploy(app=app, version=version, actor="test")
    return app


def link_end_user(app: App, requirement: Requirement, user_id: str, config: dict, *,
                  status: str = Connection.Status.ACTIVE) -> EndUserLink:
    """Link a connection for (app, user_id, requirement) directly, as the connect flow would."""
    from apps.engine.connection_types import validate_config

    ctype = requirement.connection_type
    fixed = (requirement.spec or {}).get("config") or {}
    if ctype == "oauth2" and fixed.get("url") and "url" not in config:
        config = {**config, "url": fixed["url"]}  # the flow copies the requirement's builder-fixed url
    connection = Connection.objects.create(
        project=app.project, name=f"{user_id} · {requirement.name}", type=ctype,
        config=validate_config(ctype, config), status=status, app=app, user_id=user_id,
    )
    return EndUserLink.objects.create(app=app, user_id=user_id, requirement=requirement, connection=connection)
