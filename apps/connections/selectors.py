from __future__ import annotations

from django.db.models import QuerySet

from apps.accounts.models import Project

from .models import Connection


def shared_connections(*, project: Project) -> QuerySet[Connection]:
    return Connection.objects.filter(project=project, app__isnull=True)

