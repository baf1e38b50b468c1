"""Scoped reads for the management API.

Every read starts from the projects an access key may act in: a project-scoped key sees its project,
an organization-wide key every project of its organization. Anything else is `NotFound`, never
`Forbidden`: a key must not learn that an object of another tenant exists.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Max, Prefetch, QuerySet

from apps.accounts.models import AccessKey, Project
from apps.connect.models import EndUserLink
from apps.connections.models import Connection, OAuthProvider
from apps.core.errors import BadRequest, NotFound
from apps.deployments.models import App, Deployment
from apps.workflows.models import Requirement, Workflow, WorkflowVersion


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def projects_for_key(*, key: AccessKey) -> QuerySet[Project]:
    """The projects `key` may act in (lazy; used as a subquery, so no extra round trip)."""
    if key.project_id is not None:
        return Project.objects.filter(pk=key.project_id)
    return Project.objects.filter(organization_id=key.organization_id)


def project_for_write(*, key: AccessKey, project_id: Any) -> Project:
    """The project a create acts in.

    Project-scoped key: its project; `project_id` may be omitted, and any other value is 404.
    Organization-wide key: `project_id` is required (400) and must be a project of the organization (404).
    """
    if project_id in (None, ""):
        if key.project_id is None:
            raise BadRequest(
                "An organization-wide key must name the project.", details={"project_id": ["this field is required"]}
            )
        return key.project
    parsed = _uuid_or_none(project_id)
    project = projects_for_key(key=key).filter(pk=parsed).first() if parsed else None
    if project is None:
        raise NotFound("No such project.")
    return project


def project_filter(*, key: AccessKey, project_id: Any) -> QuerySet[Project]:
    """Projects a list covers: all in scope, or the one named by a `project_id` filter (404 when outside)."""
    scope = projects_for_key(key=key)
    if project_id in (None, ""):
        return scope
    parsed = _uuid_or_none(project_id)
    if parsed is None:
        raise BadRequest("Invalid filter.", details={"project_id": ["must be a UUID"]})
    if not scope.filter(pk=parsed).exists():
        raise NotFound("No such project.")
    return scope.filter(pk=parsed)


def _get(queryset: QuerySet, object_id: Any, what: str):
    parsed = _uuid_or_none(object_id)
    obj = queryset.filter(pk=parsed).first() if parsed else None
    if obj is None:
        raise NotFound(f"No such {what}.")
    return obj


# Connections


def connections_for_key(
    *, key: AccessKey, project_id: Any = None, type: str | None = None, status: str | None = None,
    owner: str | None = None,
) -> QuerySet[Connection]:
    queryset = Connection.objects.filter(project__in=project_filter(key=key, project_id=project_id))
    if type:
        queryset = queryset.filter(type=type)
    if status:
        queryset = queryset.filter(status=status)
    if owner == Connection.Owner.PROJECT:
        queryset = queryset.filter(app__isnull=True)
    elif owner == Connection.Owner.END_USER:
        queryset = queryset.filter(app__isnull=False)
    return queryset


def connection_get(*, key: AccessKey, connection_id: Any) -> Connection:
    return _get(Connection.objects.filter(project__in=projects_for_key(key=key)), connection_id, "connection")


# OAuth2 providers


def oauth_providers_for_key(*, key: AccessKey, project_id: Any = None) -> QuerySet[OAuthProvider]:
    return OAuthProvider.objects.filter(project__in=project_filter(key=key, project_id=project_id))


def oauth_provider_get(*, key: AccessKey, provider_id: Any) -> OAuthProvider:
    return _get(OAuthProvider.objects.filter(project__in=projects_for_key(key=key)), provider_id, "OAuth2 provider")


# Workflows, requirements, versions


def _workflow_queryset() -> QuerySet[Workflow]:
    return Workflow.objects.annotate(latest_version_number=Max("versions__number"))


def workflows_for_key(*, key: AccessKey, project_id: Any = None) -> QuerySet[Workflow]:
    return _workflow_queryset().filter(project__in=project_filter(key=key, project_id=project_id))


def workflow_get(*, key: AccessKey, workflow_id: Any) -> Workflow:
    return _get(
        _workflow_queryset().select_related("project").filter(project__in=projects_for_key(key=key)),
        workflow_id, "workflow",
    )


def requirements_for_workflow(*, workflow: Workflow) -> QuerySet[Requirement]:
    return Requirement.objects.filter(workflow=workflow)


def requirement_get(*, workflow: Workflow, requirement_id: Any) -> Requirement:
    return _get(Requirement.objects.filter(workflow=workflow), requirement_id, "requirement")


def _version_queryset() -> QuerySet[WorkflowVersion]:
    # requirement_ids without one query per version.
    return WorkflowVersion.objects.prefetch_related(Prefetch("requirements", queryset=Requirement.objects.only("id")))


def versions_for_workflow(*, workflow: Workflow) -> QuerySet[WorkflowVersion]:
    return _version_queryset().filter(workflow=workflow)


def version_get(*, workflow: Workflow, version_id: Any) -> WorkflowVersion:
    return _get(_version_queryset().filter(workflow=workflow), version_id, "workflow version")


def version_for_app(*, app: App, version_id: Any) -> WorkflowVersion:
    """A version the App may deploy: one of a workflow of the App's project. Anything else is 404."""
    return _get(
        WorkflowVersion.objects.select_related("workflow").filter(workflow__project_id=app.project_id),
        version_id, "workflow version",
    )


# Apps, deployments, links


def _app_queryset() -> QuerySet[App]:
    return App.objects.select_related("current_deployment")


def apps_for_key(*, key: AccessKey, project_id: Any = None) -> QuerySet[App]:
    return _app_queryset().filter(project__in=project_filter(key=key, project_id=project_id))


def app_get(*, key: AccessKey, app_id: Any) -> App:
    return _get(_app_queryset().filter(project__in=projects_for_key(key=key)), app_id, "App")


def deployment_for_app(*, app: App, deployment_id: Any) -> Deployment:
    return _get(
        Deployment.objects.select_related("workflow_version__workflow").filter(app=app), deployment_id, "deployment"
    )


def links_for_app(
    *, app: App, user_id: str | None = None, requirement_id: Any = None, status: str | None = None
) -> QuerySet[EndUserLink]:
    queryset = EndUserLink.objects.filter(app=app).select_related("connection")
    if user_id:
        queryset = queryset.filter(user_id=user_id)
    if requirement_id:
        parsed = _uuid_or_none(requirement_id)
        if parsed is None:
            raise BadRequest("Invalid filter.", details={"requirement_id": ["must be a UUID"]})
        queryset = queryset.filter(requirement_id=parsed)
    if status:
        queryset = queryset.filter(connection__status=status)
    return queryset


def link_get(*, app: App, link_id: Any) -> EndUserLink:
    return _get(EndUserLink.objects.filter(app=app).select_related("connection"), link_id, "link")
