"""Every resolution is audited, even when the run itself cannot be stored (found in review)."""

import pytest
from django.db import IntegrityError

from apps.credentials.models import CredentialAccess
from apps.runs.models import Run
from apps.runs.requests import RunRequest
from apps.runs.services import run_sync

pytestmark = pytest.mark.django_db


def test_the_audit_row_survives_a_run_that_cannot_be_stored(simple_app, monkeypatch, upstream):
    def fail(*args, **kwargs):
        raise IntegrityError("simulated")

    # The run row is written by the run path's raw INSERT (apps.core.rawsql), not Run.save: fail that.
    monkeypatch.setattr("apps.runs.services.insert_together", fail)
    with pytest.raises(IntegrityError):
        run_sync(app=simple_app, request=RunRequest(input={"question": "q"}))
    assert len(upstream.requests) == 1  # the credential was used
    assert CredentialAccess.objects.filter(outcome="resolved").count() == 1


def test_an_idempotency_race_keeps_the_audit_row(simple_app, upstream):
    first, _ = run_sync(app=simple_app, request=RunRequest(input={"question": "q"}, idempotency_key="k-1"))
    # Simulate the race: the second request resolved before the first one's run was visible.
    Run.objects.filter(pk=first.pk).update(created_at=first.created_at)
    from apps.runs import services

    original = services.idempotent_run
    calls = {"n": 0}

    def not_yet_visible(*, app, request):
        calls["n"] += 1
        return None if calls["n"] == 1 else original(app=app, request=request)

    services.idempotent_run = not_yet_visible
    try:
        second, replayed = run_sync(app=simple_app, request=RunRequest(input={"question": "q"}, idempotency_key="k-1"))
    finally:
        services.idempotent_run = original
    assert replayed and second.id == first.id
    assert CredentialAccess.objects.filter(outcome="resolved").count() == 2
