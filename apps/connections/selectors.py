from __future__ import annotations

from .models import Connection


def connection_referrers(*, connection: Connection) -> dict[str, list[dict]]:
    """Workflow versions (and the Apps deploying them) that reference the connection. Two queries."""
    from apps.deployments.models import Deployment
    from apps.workflows.models import WorkflowVersion

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
