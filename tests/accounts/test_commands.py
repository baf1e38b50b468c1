from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.accounts.models import Organization, Project
from apps.accounts.selectors import access_key_authenticate


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("create_access_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_creates_org_and_project_and_prints_only_the_key(db):
    out, err = run("--organization", "Initech", "--project", "TPS", "--name", "ops")
    lines = out.splitlines()
    assert len(lines) == 1 and out == lines[0] + "\n"
    key = access_key_authenticate(raw_key=lines[0])
    assert key is not None and key.name == "ops" and key.created_by == "cli:create_access_key"
    assert key.project == Project.objects.get(organization__name="Initech", name="TPS")
    assert lines[0] not in err and key.preview in err


def test_it_reuses_existing_org_and_project(project):
    out, _ = run("--organization", "Acme", "--project", "Billing")
    assert Organization.objects.filter(name="Acme").count() == 1
    assert access_key_authenticate(raw_key=out.strip()).project == project


def test_org_wide_scope(db):
    out, _ = run("--organization", "Initech", "--project", "TPS", "--org-wide")
    key = access_key_authenticate(raw_key=out.strip())
    assert key.is_org_wide and key.organization.name == "Initech"


def test_it_requires_its_arguments(db):
    with pytest.raises(CommandError):
        run("--organization", "Initech")
    with pytest.raises(CommandError):
        run("--organization", " ", "--project", "TPS")
