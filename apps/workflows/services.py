from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max

from apps.accounts.models import Project
from apps.connections.models import OAuthProvider
from apps.core.actors import actor_label
from apps.core.errors import BadRequest, Conflict
from apps.engine import connection_types, probes
from apps.engine.connection_types import ConfigError

from .models import Requirement, VersionConnectionRef, Workflow, WorkflowVersion
from .validation import validate_definition


@transaction.atomic
def workflow_create(*, project: Project, name: str, description: str = "") -> Workflow:
    name = (name or "").strip()
    if not name:
        raise BadRequest("Invalid workflow.", details={"name": ["this field is required"]})
    if Workflow.objects.filter(project=project, name=name).exists():
        raise Conflict("A workflow with this name already exists in the project.", details={"name": [name]})
    return Workflow.objects.create(project=project, name=name, description=description or "")


def requirement_spec_validate(*, workflow: Workflow, spec: Any) -> dict:
    """A requirement's spec, normalized, or BadRequest with details keyed `spec.<field>`.

    `config` (SPEC §13 builder-fixed fields): non-secret fields of the end users' connections, checked as the
    connection itself would check them; required for oauth2 (`url`: where the tokens may go). `verify`: the
    link-time probe (apps.engine.probes), or `false` to skip the type's default probe.
    """
    if not isinstance(spec, dict):
        raise BadRequest("Invalid requirement.", details={"spec": ["must be an object"]})
    unknown = sorted(set(spec) - {"connection_type", "provider_id", "scopes", "config", "verify"})
    if unknown:
        raise BadRequest("Invalid requirement.", details={"spec": [f"unknown field(s): {', '.join(unknown)}"]})
    try:
        ctype = connection_types.canonical_type(spec.get("connection_type", ""))
    except ConfigError as exc:
        raise BadRequest("Invalid requirement.", details={"spec.connection_type": exc.errors["type"]}) from exc
    result: dict[str, Any] = {"connection_type": ctype}
    if ctype == "oauth2":
        provider_id = spec.get("provider_id")
        provider = None
        if provider_id:
            try:
                provider = OAuthProvider.objects.filter(project=workflow.project_id, id=provider_id).first()
            except (ValueError, TypeError):  # not a UUID
                provider = None
        if provider is None:
            raise BadRequest("Invalid requirement.", details={"spec.provider_id": ["unknown OAuth2 provider"]})
        scopes = spec.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise BadRequest("Invalid requirement.", details={"spec.scopes": ["must be a list of strings"]})
        if not isinstance(spec.get("config"), dict):
            raise BadRequest("Invalid requirement.",
                             details={"spec.config": ["must be an object with the API's url"]})
        result.update(provider_id=str(provider.id), scopes=scopes, config=_fixed_config(ctype, spec["config"]))
        if not result["config"].get("url"):
            raise BadRequest(
                "Invalid requirement.",
                details={"spec.config.url": ["this field is required: it fixes the origin the end user's token may be sent to"]},
            )
    elif "provider_id" in spec or "scopes" in spec:
        raise BadRequest("Invalid requirement.", details={"spec": ["provider_id and scopes apply to oauth2 only"]})
    elif "config" in spec:
        fixed = _fixed_config(ctype, spec["config"])
        if fixed:
            result["config"] = fixed
    if "verify" in spec:
        verify = spec["verify"]
        if verify is False:
            result["verify"] = False  # no probe, not even the type's default
        else:
            try:
                result["verify"] = probes.validate_verify_spec(ctype, verify)
            except ConfigError as exc:
                raise BadRequest("Invalid requirement.", details={
                    (f"spec.verify.{key}" if key != "verify" else "spec.verify"): msgs for key, msgs in exc.errors.items()
                }) from exc
    return result


def _fixed_config(ctype: str, config: Any) -> dict:
    """`spec.config`: the fields the builder fixes for every end user (SPEC §13), validated by the registry.

    An end user's OAuth2 connection is created by the authorization flow, so the origin its token may be
    sent to must come from the builder (SPEC §12: every credential-bearing connection fixes its origin).
    """
    try:
        return connection_types.validate_fixed_config(ctype, config)
    except ConfigError as exc:
        raise BadRequest("Invalid requirement.", details={
            (f"spec.config.{key}" if key != "config" else "spec.config"): msgs for key, msgs in exc.errors.items()
        }) from exc


@transaction.atomic
def requirement_create(
    *, workflow: Workflow, name: str, title: str, spec: dict, description: str = ""
) -> Requirement:
    name = (name or "").strip()
    errors: dict[str, list[str]] = {}
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,99}", name):
        errors["name"] = ["must be a machine name: lowercase letters, digits, '_' or '-'"]
    if not (title or "").strip():
        errors["title"] = ["this field is required"]
    if errors:
        raise BadRequest("Invalid requirement.", details=errors)
    clean_spec = requirement_spec_validate(workflow=workflow, spec=spec)
    if Requirement.objects.filter(workflow=workflow, name=name).exists():
        raise Conflict("A requirement with this name already exists on the workflow.", details={"name": [name]})
    return Requirement.objects.create(
        workflow=workflow, name=name, title=title.strip(), description=description or "", spec=clean_spec
    )


def requirement_update(*, requirement: Requirement, title: str | None = None, description: str | None = None) -> Requirement:
    """Only title and description change: name, type and spec are what links and versions rely on."""
    fields = []
    if title is not None:
        if not title.strip():
            raise BadRequest("Invalid requirement.", details={"title": ["may not be blank"]})
        requirement.title = title.strip()
        fields.append("title")
    if description is not None:
        requirement.description = description
        fields.append("description")
    if fields:
        requirement.save(update_fields=[*fields, "updated_at"])
    return requirement


def workflow_version_create(
    *, workflow: Workflow, definition: Any, description: str = "", actor=None
) -> WorkflowVersion:
    """Validate and store version n+1. Retries once if another writer took the same number."""
    validated = validate_definition(definition=definition, project=workflow.project, workflow=workflow)
    for attempt in range(2):
        try:
            with transaction.atomic():
                latest = workflow.versions.aggregate(n=Max("number"))["n"] or 0
                version = WorkflowVersion.objects.create(
                    workflow=workflow, number=latest + 1, definition=definition,
                    description=description or "", created_by=actor_label(actor),
                )
                version.requirements.set(validated.requirement_ids)
                VersionConnectionRef.objects.bulk_create(
                    [VersionConnectionRef(version=version, connection_id=cid) for cid in validated.connection_ids]
                )
                return version
        except IntegrityError:
            if attempt:
                raise Conflict("Another version was saved at the same time; try again.") from None
    raise AssertionError("unreachable")
