"""Who runs the scheduler: a thread in the web processes of the thread executor (never in management
commands other than the server, nor in tests unless a test starts one), stopping cleanly; Celery beat with the
`celery` executor, whose schedule is the registry, run by a real worker through the task's name."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.signals import request_started
from django.utils import timezone

from apps.connect.models import UsedConnectToken
from apps.scheduler import runner
from apps.scheduler.models import ScheduledJob
from apps.scheduler.registry import JOBS, TASK_NAME, PeriodicJob
from apps.scheduler.runner import SchedulerThread, runs_scheduler_thread
from tests.runs.conftest import wait_for
from tests.runs.test_celery_executor import celery_worker, redis_db  # noqa: F401  (a real worker on Redis)
from tests.scheduler import jobs

RECORD = PeriodicJob("test.record", "tests.scheduler.jobs.record", "RETENTION_EVERY_SECONDS")


@pytest.fixture(autouse=True)
def _calls():
    jobs.CALLS.clear()
    yield
    jobs.CALLS.clear()


def test_two_scheduler_threads_run_a_job_once_and_stop_cleanly(shared_db, settings):
    settings.RETENTION_EVERY_SECONDS = 3600
    schedulers = [SchedulerThread(jobs=[RECORD], tick_seconds=0.01).start() for _ in range(2)]
    try:
        wait_for(lambda: all(s.ticks >= 5 for s in schedulers), timeout=60, message="both schedulers to tick")
    finally:
        stopped = [s.stop(timeout=30) for s in schedulers]
    assert stopped == [True, True] and not any(s.alive for s in schedulers)
    assert len(jobs.CALLS) == 1 and jobs.CALLS[0] == "scheduler"  # run once, in a scheduler thread
    assert ScheduledJob.objects.get(name=RECORD.name).runs == 1


@pytest.mark.parametrize("argv, executor, expected", [
    (["manage.py", "runserver"], "thread", True),
    (["/srv/.venv/bin/gunicorn", "config.wsgi"], "thread", True),
    (["/srv/.venv/bin/gunicorn", "config.wsgi"], "celery", False),  # beat is the clock there
    (["manage.py", "migrate"], "thread", False),
    (["manage.py", "purge"], "thread", False),
    (["manage.py", "shell"], "thread", False),
    (["/srv/.venv/bin/pytest"], "thread", False),
    (["/srv/.venv/bin/celery", "-A", "config", "worker"], "thread", False),
])
def test_the_thread_runs_only_in_server_processes_of_the_thread_executor(argv, executor, expected, settings):
    settings.SCHEDULER_THREAD = None
    settings.RUNS_EXECUTOR = executor
    assert runs_scheduler_thread(argv) is expected
    settings.SCHEDULER_THREAD = True
    assert runs_scheduler_thread(["manage.py", "migrate"]) is True
    settings.SCHEDULER_THREAD = False
    assert runs_scheduler_thread(["manage.py", "runserver"]) is False


@pytest.mark.django_db
def test_no_scheduler_thread_starts_in_tests(client):
    assert client.get("/healthz").status_code == 200
    assert runner._scheduler is None
    assert not [t for t in threading.enumerate() if t.name == "scheduler"]
    assert not [r for r in request_started.receivers if "scheduler" in repr(r[0])]


@pytest.mark.django_db
def test_beat_schedule_holds_every_job():
    from config.celery import app

    schedule = app.conf.beat_schedule
    assert set(schedule) == {job.name for job in JOBS} >= {
        "retention.runs", "retention.files", "retention.credential_access", "retention.connect_tokens",
        "runs.recovery_sweep",
    }
    for job in JOBS:
        assert schedule[job.name]["task"] == TASK_NAME and schedule[job.name]["args"] == (job.name,)
        assert schedule[job.name]["schedule"] == job.every
    app.loader.import_default_modules()  # what a worker does at start: autodiscovery finds apps.scheduler.tasks
    assert TASK_NAME in app.tasks


@pytest.mark.redis
@pytest.mark.slow
def test_a_real_worker_runs_a_job_sent_as_beat_sends_it(celery_worker):  # noqa: F811
    from config.celery import app

    now = timezone.now()
    UsedConnectToken.objects.bulk_create([UsedConnectToken(jti="expired", expires_at=now - timedelta(hours=1)),
                                          UsedConnectToken(jti="live", expires_at=now + timedelta(hours=1))])
    celery_worker.start()
    entry = app.conf.beat_schedule["retention.connect_tokens"]
    app.send_task(entry["task"], args=entry["args"])
    row = wait_for(lambda: ScheduledJob.objects.filter(name="retention.connect_tokens", last_outcome="ok").first(),
                   timeout=60, message="the worker to run the job")
    assert row.runs == 1 and row.last_result == {"connect_tokens": 1}
    assert list(UsedConnectToken.objects.values_list("jti", flat=True)) == ["live"]
