"""The lease (apps.scheduler.services): a job runs once per period however many threads or processes race
for it, a lease left by a dead process lapses, a failure is recorded and the next period runs again."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.scheduler.models import ScheduledJob
from apps.scheduler.registry import PeriodicJob
from apps.scheduler.services import job_claim, job_release, job_run_if_due
from apps.scheduler.tasks import run_job_task
from tests.runs.conftest import wait_for
from tests.runs.processes import ROOT
from tests.scheduler import jobs

RECORD = PeriodicJob("test.record", "tests.scheduler.jobs.record", "RETENTION_EVERY_SECONDS")
PERIODS = 3


@pytest.fixture(autouse=True)
def _hourly(settings):
    settings.RETENTION_EVERY_SECONDS = 3600
    jobs.CALLS.clear()
    yield
    jobs.CALLS.clear()


def test_a_job_runs_once_per_period_across_racing_threads(shared_db):
    t0 = timezone.now()
    barrier = threading.Barrier(4)
    ran: list[bool] = []
    errors: list[BaseException] = []

    def racer():
        try:
            for k in range(PERIODS):
                barrier.wait(timeout=60)  # all four claim the same period at once
                ran.append(job_run_if_due(RECORD, now=t0 + k * RECORD.every)[0])
        except BaseException as exc:  # noqa: BLE001  (reported below, in the test's thread)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=racer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert ran.count(True) == PERIODS and len(ran) == 4 * PERIODS
    assert len(jobs.CALLS) == PERIODS
    row = ScheduledJob.objects.get(name=RECORD.name)
    assert row.runs == PERIODS and row.leased_until is None and row.last_outcome == "ok"


RACER = """
import os, sys, time
from datetime import datetime, timedelta
import django
django.setup()
from django.utils import timezone
from apps.scheduler.registry import PeriodicJob
from apps.scheduler.services import job_run_if_due
job = PeriodicJob("test.record", "tests.scheduler.jobs.record", "RETENTION_EVERY_SECONDS")
t0 = datetime.fromisoformat(os.environ["T0"])
for k in range(int(os.environ["PERIODS"])):
    # Period k starts for all three at once, once all three are done with period k - 1: otherwise a racer
    # still busy with period 0 would meet a job another one already ran for period 2, and skip period 1.
    open(os.path.join(os.environ["READY"], f"{k}-{os.getpid()}"), "w").close()
    while not os.path.exists(os.environ["GO"] + str(k)):
        time.sleep(0.01)
    print(job_run_if_due(job, now=t0 + k * job.every)[0], flush=True)
"""


@pytest.mark.slow
def test_a_job_runs_once_per_period_across_racing_processes(shared_db, tmp_path):
    log, go, ready = tmp_path / "calls.log", tmp_path / "go", tmp_path / "ready"
    ready.mkdir()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": shared_db,
           "RETENTION_EVERY_SECONDS": "3600", "SCHEDULER_TEST_LOG": str(log), "GO": str(go),
           "T0": timezone.now().isoformat(), "PERIODS": str(PERIODS), "READY": str(ready)}
    racers = [subprocess.Popen([sys.executable, "-c", RACER], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for k in range(PERIODS):  # each period released to the three together: each claims period 0, 1, 2 in turn
        wait_for(lambda k=k: len(list(ready.glob(f"{k}-*"))) == 3 or any(r.poll() is not None for r in racers),
                 timeout=120, message=f"the racers to reach period {k}")
        go.with_name(go.name + str(k)).touch()
    outputs = [racer.communicate(timeout=120) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), [err for _, err in outputs]
    ran = [line for out, _ in outputs for line in out.split()]
    assert ran.count("True") == PERIODS and len(ran) == 3 * PERIODS
    assert len(log.read_text().splitlines()) == PERIODS
    assert ScheduledJob.objects.get(name=RECORD.name).runs == PERIODS


@pytest.mark.django_db
def test_a_job_is_not_run_again_within_its_period():
    t0 = timezone.now()
    assert job_run_if_due(RECORD, now=t0) == (True, {"calls": 1})
    assert job_run_if_due(RECORD, now=t0 + RECORD.every / 2) == (False, None)
    assert len(jobs.CALLS) == 1


@pytest.mark.django_db
def test_the_next_period_runs_even_when_its_trigger_comes_a_little_early():
    """Beat sends every period from its own clock; the claim set next_run_at from the worker's clock a moment
    later. The next message must still run the job (else the job would run every other period)."""
    t0 = timezone.now()
    assert job_run_if_due(RECORD, now=t0 + timedelta(seconds=5))[0]  # the first message, 5 s late
    assert job_run_if_due(RECORD, now=t0 + RECORD.every)[0]  # the next one, on time
    assert len(jobs.CALLS) == 2


@pytest.mark.django_db
def test_a_lease_left_by_a_dead_process_blocks_until_it_lapses():
    slow = PeriodicJob("test.record", "tests.scheduler.jobs.record", "RETENTION_EVERY_SECONDS", lease_seconds=2 * 3600)
    t0 = timezone.now()
    dead = job_claim(job=slow, now=t0)  # claimed, then the process died: never released
    assert dead is not None
    assert job_claim(job=slow, now=t0 + slow.every) is None  # due again, but still leased
    taken = job_claim(job=slow, now=t0 + timedelta(hours=2, seconds=1))
    assert taken is not None
    job_release(job=slow, token=dead, outcome="ok", result={})  # the dead holder's late release changes nothing
    assert ScheduledJob.objects.get(name=slow.name).lease_owner == taken


@pytest.mark.django_db
def test_a_failing_job_is_recorded_and_runs_again_next_period(caplog):
    broken = PeriodicJob("test.explode", "tests.scheduler.jobs.explode", "RETENTION_EVERY_SECONDS")
    t0 = timezone.now()
    assert job_run_if_due(broken, now=t0) == (True, None)
    row = ScheduledJob.objects.get(name=broken.name)
    assert row.last_outcome == "failed" and row.leased_until is None
    assert row.last_result == {"error": "RuntimeError"}
    assert "scheduled job test.explode failed" in caplog.text
    assert job_run_if_due(broken, now=t0 + broken.every)[0]


@pytest.mark.django_db
def test_the_celery_task_runs_a_registered_job_once_per_period():
    first = run_job_task("retention.connect_tokens")
    second = run_job_task("retention.connect_tokens")  # a second beat, or a redelivered message
    assert first == {"job": "retention.connect_tokens", "ran": True, "result": {"connect_tokens": 0}}
    assert second == {"job": "retention.connect_tokens", "ran": False, "result": None}
