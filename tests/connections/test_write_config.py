"""Issue 10: one writer of connection configs and their history rows; apps.connections imports no app above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from apps.connections.models import Connection, ConnectionConfigChange
from apps.connections.services import connection_write_config
from tests import factories

ROOT = Path(__file__).resolve().parents[2]
ABOVE_CONNECTIONS = ("apps.connect", "apps.credentials", "apps.runs", "apps.management_api", "apps.demo")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_apps_connections_imports_nothing_from_the_apps_above_it():
    offending = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "apps" / "connections").rglob("*.py")
        for name in _imported_modules(path)
        if name.startswith(ABOVE_CONNECTIONS)
    }
    assert not offending


@pytest.mark.django_db
def test_it_inserts_an_unsaved_connection_with_one_history_row(project):
    connection = Connection(project=project, name="fresh", type="http_api_key", created_by="test")
    config = {"url": "https://api.example.com", "api_key": "k-123456789", "header": "Authorization", "prefix": "Bearer"}
    with CaptureQueriesContext(db) as queries:
        connection_write_config(connection=connection, config=config, actor="test")
    assert len(queries) == 2  # the INSERT and the history row
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.config == config and stored.updated_by == "test"
    [entry] = ConnectionConfigChange.objects.filter(connection=connection)
    assert entry.actor == "test" and entry.changed_fields == sorted(config)


@pytest.mark.django_db
def test_it_updates_only_the_given_columns_and_records_the_changed_fields(project):
    connection = factories.make_connection(project)
    before_status, before_expiry = connection.status, connection.expires_at
    Connection.objects.filter(pk=connection.pk).update(status=Connection.Status.UNAUTHORIZED)
    config = {**connection.config, "prefix": "Token"}
    connection_write_config(connection=connection, config=config, actor="end_user:u" + "x" * 300)
    stored = Connection.objects.get(pk=connection.pk)
    # No status given: the stored one stays (the in-memory copy was stale on purpose).
    assert stored.status == Connection.Status.UNAUTHORIZED and before_status == Connection.Status.ACTIVE
    assert stored.expires_at == before_expiry and stored.config["prefix"] == "Token"
    assert len(stored.updated_by) == 200
    entry = ConnectionConfigChange.objects.filter(connection=connection).order_by("-changed_at", "-id").first()
    assert entry.changed_fields == ["prefix"] and len(entry.actor) == 200
