"""What a proxy call may reach: the requirements and shared connections the App's deployed version references
(SPEC §14). Nothing else: not a connection of another App's version, not one of the project that no node of
this App uses, not an end user's connection by its ID."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from apps.core.errors import Conflict, NotFound
from apps.deployments.models import App
from apps.engine.refs import collect_references
from apps.workflows.models import Requirement


@dataclass(frozen=True)
class ProxyTarget:
    label: str  # how the caller named it: the requirement's name, or `connections/<id>`
    requirement_id: str | None = None
    connection_id: str | None = None


def _references(app: App) -> tuple[list[str], list[str], str]:
    deployment = app.current_deployment
    if deployment is None:
        raise Conflict("The App has no deployed workflow version.")
    version = deployment.workflow_version
    connection_ids, requirement_ids = collect_references(version.definition)
    return connection_ids, requirement_ids, str(version.workflow_id)


def requirement_target(*, app: App, name: str) -> ProxyTarget:
    """The requirement named `name` of the deployed version's workflow, if that version references it. One
    query (none when the version references no requirement)."""
    _, requirement_ids, workflow_id = _references(app)
    requirement = None
    if requirement_ids and 0 < len(name) <= 255 and "\x00" not in name:  # PostgreSQL text cannot hold NUL
        requirement = (Requirement.objects.filter(workflow_id=workflow_id, name=name, id__in=requirement_ids)
                       .only("id").first())
    if requirement is None:
        raise NotFound("The App's deployed version has no requirement with this name.",
                       details={"requirement_name": ["unknown requirement"]})
    return ProxyTarget(label=name, requirement_id=str(requirement.id))


def connection_target(*, app: App, connection_id: str) -> ProxyTarget:
    """A shared connection a node of the deployed version references by ID. No query."""
    connection_ids, _, _ = _references(app)
    try:
        wanted = str(uuid.UUID(str(connection_id)))
    except ValueError:
        wanted = ""
    if wanted not in {str(uuid.UUID(cid)) for cid in connection_ids if _is_uuid(cid)}:
        raise NotFound("The App's deployed version references no connection with this ID.",
                       details={"connection_id": ["not referenced by the deployed version"]})
    return ProxyTarget(label=f"connections/{wanted}", connection_id=wanted)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
