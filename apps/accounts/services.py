from __future__ import annotations

from datetime import datetime

from django.db import transaction

from apps.core.actors import actor_label

from .models import AccessKey, Organization, Project


@transaction.atomic
def project_get_or_create(*, organization_name: str, project_name: str) -> Project:
    organization, _ = Organization.objects.get_or_create(name=organization_name)
    project, _ = Project.objects.get_or_create(organization=organization, name=project_name)
    return project


def access_key_create(
    *,
    organization: Organization,
    project: Project | None,
    name: str = "",
    expires_at: datetime | None = None,
    actor=None,
) -> tuple[AccessKey, str]:
    """Create a key; returns (key, raw_key). The raw key is never stored: show it once, then forget it."""
    if project is not None and project.organization_id != organization.id:
        raise ValueError("project belongs to another organization")
    raw_key = AccessKey.generate()
    key = AccessKey(organization=organization, project=project, name=name, expires_at=expires_at,
                    created_by=actor_label(actor))
    key.set_key(raw_key)
    key.save()
    return key, raw_key
