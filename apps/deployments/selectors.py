from __future__ import annotations

import uuid

from django.db import connection as db
from django.db.models import QuerySet

from apps.accounts.models import AccessKey, Project
from apps.connections.models import Connection
from apps.core.rawsql import Columns, set_related
from apps.workflows.models import WorkflowVersion
from apps.workflows.selectors import version_by_id

from .models import App, Deployment


def _app_queryset() -> QuerySet[App]:
    # The App with its project and live version, for connect's token authentication and pages (the
    # App-host path reads the same through `app_route`, below). `order_by()` drops the model's default
    # ordering; the callback signing secret is deferred: decrypting it here would be wasted work.
    return (
        App.objects.select_related("project", "current_deployment__workflow_version")
        .defer("callback_signing_secret")
        .order_by()
    )


def app_by_id(*, app_id: str) -> App | None:
    """One query; None for an unknown or malformed ID."""
    try:
        uuid.UUID(str(app_id))
    except ValueError:
        return None
    return _app_queryset().filter(id=app_id).first()


# The App-host route: the App, its project (key scope), its live deployment, and the caller's access key
# row when a key was presented, in ONE statement per request. Nothing of it is cached: a deploy, a rollback,
# an access-type change or a revoked key shows on the very next request of every worker (SPEC.md section
# 11). Only the deployed version, immutable, comes from a per-process cache (apps.workflows.selectors).
_ROUTE_APP = Columns(App, "a", defer=("callback_signing_secret",))
_ROUTE_PROJECT = Columns(Project, "p")
_ROUTE_DEPLOYMENT = Columns(Deployment, "d")
_ROUTE_KEY = Columns(AccessKey, "k")
_route_sql: dict[str, str] = {}


def _route_statement(by: str) -> str:
    statement = _route_sql.get(by)
    if statement is None:
        quote = db.ops.quote_name
        statement = _route_sql[by] = (
            f"SELECT {_ROUTE_APP.sql()}, {_ROUTE_PROJECT.sql()}, {_ROUTE_DEPLOYMENT.sql()}, {_ROUTE_KEY.sql()} "
            f"FROM {quote(App._meta.db_table)} a "
            f"INNER JOIN {quote(Project._meta.db_table)} p ON p.id = a.project_id "
            f"LEFT OUTER JOIN {quote(Deployment._meta.db_table)} d ON d.id = a.current_deployment_id "
            f"LEFT OUTER JOIN {quote(AccessKey._meta.db_table)} k ON k.digest = %s "
            f"WHERE a.{quote(by)} = %s"
        )
    return statement


def app_route(*, app_id=None, hostname: str | None = None, key_digest: str | None = None) -> tuple[App | None, AccessKey | None]:
    """The App by ID or hostname, ready for the App-host path (project, deployment and version attached, so
    reading them runs no query), and the access key with `key_digest` if one exists (usable or not: the
    caller checks). One statement; (None, None) for an unknown App or a malformed ID."""
    if app_id is not None:
        try:
            value = App._meta.pk.get_db_prep_value(uuid.UUID(str(app_id)), db)
        except ValueError:
            return None, None
        statement = _route_statement("id")
    else:
        value, statement = hostname, _route_statement("hostname")
    with db.cursor() as cursor:
        cursor.execute(statement, [key_digest, value])
        row = cursor.fetchone()
    if row is None:
        return None, None
    app = _ROUTE_APP.load(row)
    offset = _ROUTE_APP.width
    set_related(app, "project", _ROUTE_PROJECT.load(row, offset))
    offset += _ROUTE_PROJECT.width
    deployment = _ROUTE_DEPLOYMENT.load(row, offset)
    offset += _ROUTE_DEPLOYMENT.width
    if deployment is not None:
        set_related(deployment, "workflow_version", version_by_id(version_id=deployment.workflow_version_id))
        set_related(deployment, "app", app)
    set_related(app, "current_deployment", deployment)
    key = _ROUTE_KEY.load(row, offset) if key_digest else None
    return app, key


def deployment_history(*, app: App) -> QuerySet[Deployment]:
    return app.deployments.select_related("workflow_version").order_by("-created_at")


def connection_referrers(*, connection: Connection) -> dict[str, list[dict]]:
    """Workflow versions (and the Apps deploying them) that reference the connection. Two queries.

    Here rather than in connections: versions and deployments sit above connections in the layers, and
    deployments is the lowest app that sees both."""
    versions = list(
        WorkflowVersion.objects.filter(connection_refs__connection=connection)
        .select_related("workflow")
        .order_by("workflow__name", "number")
    )
    deployments = (
        Deployment.objects.filter(workflow_version__in=versions, status=Deployment.Status.ACTIVE)
        .select_related("app")
        .order_by("app__name")
    )
    return {
        "versions": [
            {"workflow_id": str(v.workflow_id), "workflow": v.workflow.name, "version_id": str(v.id), "number": v.number}
            for v in versions
        ],
        "apps": [{"app_id": str(d.app_id), "app": d.app.name} for d in deployments],
    }
