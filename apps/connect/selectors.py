from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db.models import OuterRef, Subquery

from apps.connections.models import Connection
from apps.core.errors import NotFound
from apps.deployments.models import App
from apps.workflows.models import Requirement

from .models import EndUserLink, UsedConnectToken


@dataclass(frozen=True)
class RequirementStatus:
    requirement: Requirement
    connection_status: str | None  # the linked connection's status, None when nothing is linked

    @property
    def completed(self) -> bool:
        return self.connection_status == Connection.Status.ACTIVE

    @property
    def status(self) -> str:
        return "completed" if self.completed else "pending"


def requirement_statuses(*, app: App, user_id: str) -> list[RequirementStatus]:
    """The requirements of the App's deployed version with this user's link status. One query.

    `app.current_deployment` must be loaded (apps.deployments.selectors load it with the App).
    """
    deployment = app.current_deployment
    if deployment is None:
        return []
    link_status = EndUserLink.objects.filter(app=app, user_id=user_id, requirement=OuterRef("pk")).values(
        "connection__status"
    )[:1]
    requirements = (
        Requirement.objects.filter(versions=deployment.workflow_version_id)
        .annotate(link_status=Subquery(link_status))
        .order_by("title", "name")
    )
    return [RequirementStatus(requirement=r, connection_status=r.link_status) for r in requirements]


def deployed_requirement(*, app: App, requirement_id) -> Requirement:
    """A requirement of the App's deployed version, or NotFound (also for a malformed ID). One query."""
    deployment = app.current_deployment
    try:
        requirement_id = uuid.UUID(str(requirement_id))
    except ValueError:
        raise NotFound("No such requirement for this App.") from None
    requirement = (
        Requirement.objects.filter(id=requirement_id, versions=deployment.workflow_version_id).first()
        if deployment is not None
        else None
    )
    if requirement is None:
        raise NotFound("No such requirement for this App.")
    return requirement


def end_user_link(*, app: App, user_id: str, requirement: Requirement) -> EndUserLink | None:
    return (
        EndUserLink.objects.select_related("connection", "connection__provider")
        .filter(app=app, user_id=user_id, requirement=requirement)
        .first()
    )


def connect_token_used_on_page(*, jti: str) -> bool:
    """Whether the hosted page exchanged the token with this `jti` (one indexed lookup)."""
    return UsedConnectToken.objects.filter(jti=jti).exists()
