from __future__ import annotations

import uuid

from django.db.models import QuerySet

from apps.connections.models import Connection
from apps.workflows.models import WorkflowVersion

from .models import App, Deployment


def _app_queryset() -> QuerySet[App]:
    # What the App-host path reads (project IDs for key scope, the live version's definition) and no
    # more: this query runs on every App-host request. `order_by()` drops the model's default ordering.
    # The callback signing secret is deferred: decrypting it on every request would be wasted work.
    return (
        App.objects.select_related("project", "current_deployment__workflow_version")
        .defer("callback_signing_secret")
        .order_by()
    )


def app_for_hostname(*, hostname: str) -> App | None:
    """The App served on `hostname`, with its live deployment and version (one query)."""
    return _app_queryset().filter(hostname=hostname).first()


def app_by_id(*, app_id: str) -> App | None:
    """One query; None for an unknown or malformed ID."""
    try:
        uuid.UUID(str(app_id))
    except ValueError:
        return None
    return _app_queryset().filter(id=app_id).first()


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
