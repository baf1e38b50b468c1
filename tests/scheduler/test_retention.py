"""Retention (SPEC §15): each purge deletes exactly what is older than its period, in bounded batches, and
keeps what is recent or still owed; `manage.py purge` runs them by hand, `--dry-run` only counts."""

from __future__ import annotations

import os
from datetime import timedelta
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.connect.models import UsedConnectToken
from apps.connect.retention import used_connect_tokens_purge_expired
from apps.credentials.models import CredentialAccess
from apps.credentials.retention import credential_access_purge_expired
from apps.runs.files import files_purge_expired, files_store
from apps.runs.models import CallbackDelivery, File, Run, RunEvent
from apps.runs.requests import RunRequest
from apps.runs.retention import runs_purge_expired
from apps.runs.services import new_run
from tests import factories

DAY = timedelta(days=1)
pytestmark = pytest.mark.django_db


@pytest.fixture
def retention(settings, tmp_path):
    settings.RETENTION_RUNS_DAYS = 30
    settings.RETENTION_AUDIT_DAYS = 90
    settings.UNREFERENCED_FILE_RETENTION_HOURS = 24
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return settings


@pytest.fixture
def app(project):
    workflow = factories.make_workflow(project, "retained")
    version = factories.make_version(workflow, factories.definition(output={"ok": "yes"}))
    return factories.make_app(project, name="Retained", version=version)


def make_run(app, *, age: timedelta, status: str = Run.Status.COMPLETED, file_ids=(), events: int = 3,
             callbacks: int = 1) -> Run:
    run = new_run(app=app, request=RunRequest(input={"question": "q"}, mode="async", file_ids=[str(f) for f in file_ids]))
    run.status = status
    run.created_at = timezone.now() - age
    if status in Run.TERMINAL:
        run.started_at = run.ended_at = run.created_at
    run.save(force_insert=True)
    RunEvent.objects.bulk_create([RunEvent(run=run, sequence=i, type="run.created", data={}, timestamp=run.created_at)
                                  for i in range(1, events + 1)])
    CallbackDelivery.objects.bulk_create([CallbackDelivery(run=run, url=f"https://hooks.example/{i}", status="delivered")
                                          for i in range(callbacks)])
    return run


def make_audit(*, age: timedelta) -> CredentialAccess:
    row = CredentialAccess.objects.create(requester="in_process", outcome="resolved")
    CredentialAccess.objects.filter(id=row.id).update(created_at=timezone.now() - age)
    return row


def make_file(app, content: bytes, *, age: timedelta) -> File:
    record = files_store(app=app, uploads=[SimpleUploadedFile("f.txt", content, "text/plain")])[0]
    File.objects.filter(id=record.id).update(created_at=timezone.now() - age)
    return record


def ids(queryset) -> set[str]:
    return {str(i) for i in queryset.values_list("pk", flat=True)}


def test_old_finished_runs_go_with_their_events_and_callbacks(app, retention):
    old = [make_run(app, age=31 * DAY, status=s) for s in (Run.Status.COMPLETED, Run.Status.FAILED, Run.Status.CANCELED)]
    recent = make_run(app, age=29 * DAY)
    pending = [make_run(app, age=60 * DAY, status=s) for s in (Run.Status.CREATED, Run.Status.STARTED)]

    assert runs_purge_expired() == {"runs": 3, "events": 9, "callbacks": 3}

    kept = {str(recent.id), *(str(r.id) for r in pending)}
    assert ids(Run.objects.all()) == kept
    assert {str(i) for i in RunEvent.objects.values_list("run_id", flat=True)} == kept
    assert {str(i) for i in CallbackDelivery.objects.values_list("run_id", flat=True)} == kept
    assert not set(map(str, (r.id for r in old))) & kept


def test_runs_are_deleted_in_bounded_batches(app, retention):
    retention.RETENTION_BATCH_SIZE = 2
    retention.RETENTION_MAX_BATCHES = 2
    for _ in range(5):
        make_run(app, age=40 * DAY, events=1, callbacks=0)
    with CaptureQueriesContext(connection) as queries:
        first = runs_purge_expired()
    deletes = [q["sql"] for q in queries if q["sql"].startswith('DELETE FROM "runs_run"')]
    assert first["runs"] == 4 and len(deletes) == 2  # two batches of two; the fifth waits for the next run
    assert runs_purge_expired()["runs"] == 1
    assert Run.objects.count() == 0


def test_zero_keeps_runs_and_audit_forever(app, retention):
    retention.RETENTION_RUNS_DAYS = 0
    retention.RETENTION_AUDIT_DAYS = 0
    make_run(app, age=3650 * DAY)
    make_audit(age=3650 * DAY)
    assert runs_purge_expired() == {"runs": 0, "events": 0, "callbacks": 0}
    assert credential_access_purge_expired() == {"audit": 0}
    assert Run.objects.count() == 1 and CredentialAccess.objects.count() == 1


def test_old_audit_rows_go_and_recent_ones_stay(retention):
    old = [make_audit(age=91 * DAY) for _ in range(3)]
    recent = make_audit(age=89 * DAY)
    assert credential_access_purge_expired() == {"audit": 3}
    assert ids(CredentialAccess.objects.all()) == {str(recent.id)}
    assert old


def test_unreferenced_files_go_with_their_bytes_once_their_runs_are_purged(app, retention):
    media = retention.MEDIA_ROOT
    kept_by_recent_run = make_file(app, b"recent-run", age=40 * DAY)
    freed_by_old_run = make_file(app, b"old-run", age=40 * DAY)
    orphan_old = make_file(app, b"orphan", age=2 * DAY)
    orphan_new = make_file(app, b"new", age=timedelta(hours=1))
    make_run(app, age=10 * DAY, file_ids=[kept_by_recent_run.id])
    make_run(app, age=35 * DAY, file_ids=[freed_by_old_run.id])
    paths = {f.id: os.path.join(media, f.file.name) for f in (kept_by_recent_run, freed_by_old_run, orphan_old, orphan_new)}
    assert all(os.path.exists(p) for p in paths.values())

    out = StringIO()
    call_command("purge", stdout=out)  # runs first, then the files they alone referenced

    assert ids(File.objects.all()) == {str(kept_by_recent_run.id), str(orphan_new.id)}
    assert {i for i, p in paths.items() if os.path.exists(p)} == {kept_by_recent_run.id, orphan_new.id}
    assert "retention.files: deleted 2 files" in out.getvalue()


def test_only_expired_used_connect_tokens_go(retention):
    now = timezone.now()
    UsedConnectToken.objects.bulk_create([
        UsedConnectToken(jti="expired-1", expires_at=now - timedelta(minutes=1)),
        UsedConnectToken(jti="expired-2", expires_at=now - DAY),
        UsedConnectToken(jti="live", expires_at=now + timedelta(minutes=5)),
    ])
    assert used_connect_tokens_purge_expired() == {"connect_tokens": 2}
    assert ids(UsedConnectToken.objects.all()) == {"live"}


def test_purge_dry_run_prints_the_counts_and_deletes_nothing(app, retention):
    make_run(app, age=31 * DAY, events=2, callbacks=1)
    make_run(app, age=31 * DAY, status=Run.Status.STARTED)
    make_audit(age=100 * DAY)
    make_file(app, b"orphan", age=2 * DAY)
    UsedConnectToken.objects.create(jti="expired", expires_at=timezone.now() - DAY)
    before = (Run.objects.count(), RunEvent.objects.count(), CallbackDelivery.objects.count(),
              CredentialAccess.objects.count(), File.objects.count(), UsedConnectToken.objects.count())

    out = StringIO()
    call_command("purge", "--dry-run", stdout=out)

    assert out.getvalue().splitlines() == [
        "retention.runs: would delete 1 runs, 2 events, 1 callbacks",
        "retention.files: would delete 1 files",
        "retention.credential_access: would delete 1 audit",
        "retention.connect_tokens: would delete 1 connect_tokens",
        "retention.proxy_calls: would delete 0 proxy_calls",
    ]
    assert before == (Run.objects.count(), RunEvent.objects.count(), CallbackDelivery.objects.count(),
                      CredentialAccess.objects.count(), File.objects.count(), UsedConnectToken.objects.count())
    assert files_purge_expired(dry_run=True) == {"files": 1}
