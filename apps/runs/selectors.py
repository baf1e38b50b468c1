from __future__ import annotations

from django.db.models import QuerySet

from apps.connect.selectors import unsatisfied_requirements
from apps.core.errors import BadRequest
from apps.core.pagination import apply_sort
from apps.deployments.models import App

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
    """`GET /v1/requirements/status`: which requirements of the App's live version this user has not
    satisfied (linked with an `active` connection). One indexed statement, whatever the number of users,
    links or requirements (apps.connect.selectors.unsatisfied_requirements)."""
    unsatisfied = [
        {
            "id": item.id,
            "type": item.type,
            "name": item.name,
            "form": {"title": item.title, "description": item.description},
            "spec": item.spec,
            "workflow_id": item.workflow_id,
        }
        for item in unsatisfied_requirements(app=app, user_id=user_id)
    ]
    return {"status": "incomplete" if unsatisfied else "complete", "unsatisfied": unsatisfied}
