"""Definition validation on save (SPEC.md section 4): the engine checks the shape
(`engine.definition.check_definition`, errors keyed by a path into the definition); this module adds what
needs the database: each referenced connection and requirement exists (in this project / on this
workflow) and has a type that can serve its node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apps.accounts.models import Project
from apps.connections.models import Connection
from apps.core.errors import BadRequest
from apps.engine import connection_types
from apps.engine.definition import check_definition
from apps.engine.nodes import REGISTRY as NODE_REGISTRY

from .models import Requirement


@dataclass
class ValidatedDefinition:
    connection_ids: list[str] = field(default_factory=list)
    requirement_ids: list[str] = field(default_factory=list)


def validate_definition(*, definition: Any, project: Project, workflow) -> ValidatedDefinition:
    """Raise BadRequest (400, per-path details) or return the references the definition makes."""
    shape = check_definition(definition)
    errors = shape.errors
    if shape.unreadable:
        raise BadRequest("Invalid workflow definition.", details=dict(errors))

    connections = {
        str(c.id): c
        for c in Connection.objects.filter(
            id__in={r.ref_id for r in shape.connection_refs}, project=project, app__isnull=True
        ).only("id", "type")
    }
    for index, node_type, ref_id in shape.connection_refs:
        connection = connections.get(ref_id)
        if connection is None:
            errors.add(f"nodes.{index}.connection.id", "no shared connection with this ID in the project")
        elif not NODE_REGISTRY[node_type].accepts(connection.type):
            errors.add(f"nodes.{index}.connection.id", f"a {connection.type} connection cannot serve a {node_type} node")
    requirements = {
        str(r.id): r
        for r in Requirement.objects.filter(id__in={r.ref_id for r in shape.requirement_refs}, workflow=workflow)
    }
    for index, node_type, ref_id in shape.requirement_refs:
        requirement = requirements.get(ref_id)
        if requirement is None:
            errors.add(f"nodes.{index}.connection.requirement", "no requirement with this ID on this workflow")
            continue
        ctype = requirement.connection_type
        if ctype not in connection_types.REGISTRY or not NODE_REGISTRY[node_type].accepts(ctype):
            errors.add(
                f"nodes.{index}.connection.requirement", f"a {ctype} requirement cannot serve a {node_type} node"
            )
    if errors:
        raise BadRequest("Invalid workflow definition.", details=dict(errors))
    return ValidatedDefinition(
        connection_ids=list(dict.fromkeys(r.ref_id for r in shape.connection_refs)),
        requirement_ids=list(dict.fromkeys(r.ref_id for r in shape.requirement_refs)),
    )
