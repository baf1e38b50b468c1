from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from functools import cache

from django.db import connection as db
from django.db.models import JSONField, OuterRef, Subquery

from apps.connections.models import Connection
from apps.core.errors import NotFound
from apps.deployments.models import App
from apps.engine import connection_types
from apps.workflows.models import Requirement, WorkflowVersion

from .models import EndUserLink, UsedConnectToken


@dataclass(frozen=True)
class RequirementStatus:
    requirement: Requirement
    connection_status: str | None  # the linked connection's status, None when nothing is linked
    account: dict | None = None  # the linked connection's account {"id", "label"} (SPEC §13), when known

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
    links = EndUserLink.objects.filter(app=app, user_id=user_id, requirement=OuterRef("pk"))
    requirements = (
        Requirement.objects.filter(versions=deployment.workflow_version_id)
        .annotate(link_status=Subquery(links.values("connection__status")[:1]),
                  link_account=Subquery(links.values("connection__account")[:1], output_field=JSONField()))
        .order_by("title", "name")
    )
    return [RequirementStatus(requirement=r, connection_status=r.link_status, account=_account(r.link_account))
            for r in requirements]


def _account(value) -> dict | None:
    # A JSON subquery comes back decoded on PostgreSQL and as text on some SQLite builds: one shape either way.
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def asked_fields(requirement: Requirement) -> list[dict]:
    """What the end user fills for `requirement` (SPEC §13): the type's fields minus the builder-fixed ones.
    OAuth2 asks nothing (the provider's consent fills the connection)."""
    ctype = connection_types.get_type(requirement.connection_type)
    if ctype.oauth:
        return []
    return [
        {"name": f.name, "label": f.label or f.name, "kind": f.kind, "required": f.required,
         "secret": f.secret or f.sensitive_values}
        for f in connection_types.asked_fields(ctype.name, (requirement.spec or {}).get("config"))
    ]


@dataclass(frozen=True)
class UnsatisfiedRequirement:
    """The columns the status endpoint shows of a requirement, as plain values (IDs as strings)."""

    id: str
    type: str
    name: str
    title: str
    description: str
    spec: dict
    workflow_id: str


@cache
def _unsatisfied_sql(vendor: str) -> str:
    """The statement of `unsatisfied_requirements`, from the models' table and column names (built once per
    database vendor: the quoting is the backend's).

    The versions' requirements left-joined to this user's link and its connection: at most one link per
    requirement (`enduserlink_unique_triple` on (app, user_id, requirement) is the index it uses), so no
    subquery, sort or LIMIT per requirement; only what the answer shows is read."""
    r, link, conn = Requirement._meta, EndUserLink._meta, Connection._meta
    through = WorkflowVersion.requirements.through._meta

    def col(meta, name: str) -> str:
        return db.ops.quote_name(meta.get_field(name).column)

    q = db.ops.quote_name
    version_fk = WorkflowVersion.requirements.field.m2m_column_name()
    requirement_fk = WorkflowVersion.requirements.field.m2m_reverse_name()
    shown = ", ".join(f"r.{col(r, name)}" for name in ("id", "type", "name", "title", "description", "spec", "workflow"))
    return (
        f"SELECT {shown} FROM {q(r.db_table)} r"
        f" INNER JOIN {q(through.db_table)} vr ON vr.{q(requirement_fk)} = r.{col(r, 'id')}"
        f" LEFT OUTER JOIN {q(link.db_table)} l ON l.{col(link, 'app')} = %s AND l.{col(link, 'user_id')} = %s"
        f" AND l.{col(link, 'requirement')} = r.{col(r, 'id')}"
        f" LEFT OUTER JOIN {q(conn.db_table)} c ON c.{col(conn, 'id')} = l.{col(link, 'connection')}"
        f" WHERE vr.{q(version_fk)} = %s AND (c.{col(conn, 'status')} IS NULL OR c.{col(conn, 'status')} <> %s)"
        f" ORDER BY r.{col(r, 'title')} ASC, r.{col(r, 'name')} ASC"
    )


def _uuid_text(value) -> str:
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(value))  # SQLite stores 32 hex digits


def unsatisfied_requirements(*, app: App, user_id: str) -> list[UnsatisfiedRequirement]:
    """The requirements of the App's deployed version this user has not satisfied (no link, or a link whose
    connection is not `active`), ordered like `requirement_statuses`. One statement.

    `GET /v1/requirements/status` runs this on every call and must stay within 5 ms at a million links
    (SPEC.md section 11; bench/status_scale.py): one parameterised SQL statement, because compiling the
    equivalent ORM query (a correlated subquery per requirement) cost more than running it.
    `app.current_deployment` must be loaded (apps.deployments.selectors load it with the App).
    """
    deployment = app.current_deployment
    if deployment is None:
        return []
    uuid_field = App._meta.pk
    params = [
        uuid_field.get_db_prep_value(app.id, db),
        user_id,
        uuid_field.get_db_prep_value(deployment.workflow_version_id, db),
        Connection.Status.ACTIVE.value,
    ]
    with db.cursor() as cursor:
        cursor.execute(_unsatisfied_sql(db.vendor), params)
        rows = cursor.fetchall()
    spec_field = Requirement._meta.get_field("spec")  # the JSONField's own decoding, as the ORM would
    return [
        UnsatisfiedRequirement(
            id=_uuid_text(id_), type=type_, name=name, title=title, description=description,
            spec=spec_field.from_db_value(spec, None, db), workflow_id=_uuid_text(workflow_id),
        )
        for id_, type_, name, title, description, spec, workflow_id in rows
    ]


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
