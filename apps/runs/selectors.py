from __future__ import annotations

from django.db.models import QuerySet

from apps.connect.models import EndUserLink
from apps.connections.models import Connection
from apps.core.errors import BadRequest
from apps.core.pagination import apply_sort
from apps.deployments.models import App
from apps.deployments.selectors import deployed_requirements

from .models import Run


def runs_for_app(*, app: App, params) -> QuerySet[Run]:
    """`GET /v1/runs` filters: status (repeatable), user_id, session_id; sort (default newest first)."""
    queryset = Run.objects.filter(app=app)
    statuses = params.getlist("status") if hasattr(params, "getlist") else []
    if statuses:
        unknown = sorted(set(statuses) - set(Run.Status.values))
        if unknown:
            raise BadRequest("Invalid filter.", details={"status": [f"unknown status: {', '.join(unknown)}"]})
        queryset = queryset.filter(status__in=statuses)
    for name in ("user_id", "session_id"):
        if params.get(name):
            queryset = queryset.filter(**{name: params[name]})
    return apply_sort(queryset, params.get("sort"), allowed=("created_at", "started_at", "ended_at", "status"),
                      default="-created_at")


def requirements_status(*, app: App, user_id: str) -> dict:
    """Which requirements of the App's live version this user has satisfied. Two indexed queries,
    whatever the number of users or links."""
    requirements = deployed_requirements(app=app)
    satisfied = set(
        EndUserLink.objects.filter(
            app=app, user_id=user_id, requirement__in=[r.id for r in requirements],
            connection__status=Connection.Status.ACTIVE,
        ).values_list("requirement_id", flat=True)
    ) if requirements else set()
    unsatisfied = [
        {
            "id": str(r.id),
            "type": r.type,
            "name": r.name,
            "form": {"title": r.title, "description": r.description},
            "spec": r.spec,
            "workflow_id": str(r.workflow_id),
        }
        for r in requirements
        if r.id not in satisfied
    ]
    return {"status": "incomplete" if unsatisfied else "complete", "unsatisfied": unsatisfied}
