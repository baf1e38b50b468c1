"""The `celery` executor with a real worker (`celery -A config worker`, a subprocess) on the local Redis
(this session's own queue and key prefix, see tests/settings.py; only those keys are deleted after) and the test's database (shared_db: the PostgreSQL test database, or a SQLite
file): background runs complete; a worker killed with SIGKILL mid-run and restarted leaves every run
ended exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from apps.runs import dispatch
from apps.runs.models import CallbackDelivery, Run, RunEvent
from tests.conftest import REQUIRE_SERVICES
from tests.runs.conftest import REDIS_URL, make_http_app, wait_for
from tests.runs.processes import ROOT, stop_process_group
from tests.support.http_stub import HttpStub, StubResponse, echo

pytestmark = [pytest.mark.redis, pytest.mark.slow]

VISIBILITY_TIMEOUT = 3  # seconds before Redis hands a dead worker's unacked message to another worker
LEASE = 1.5  # seconds without heartbeat before a started run counts as orphaned


@pytest.fixture
def redis_db():
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        if REQUIRE_SERVICES:
            raise
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    yield client
    # Delete what this session wrote, and nothing else: another suite may be using the same database.
    from django.conf import settings as django_settings

    prefix = django_settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


class Worker:
    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log, self.process = env, log, None

    def start(self) -> Worker:
        offset = self.log.stat().st_size if self.log.exists() else 0
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=prefork", "--concurrency=1",
             "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"test-{uuid.uuid4().hex[:8]}@%h"],
            cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(lambda: b" ready." in self.log.read_bytes()[offset:] or self.process.poll() is not None, timeout=60,
                 message="the Celery worker to start")
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        return self

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and pool child, no chance to ack or requeue anything."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        stop_process_group(self.process)


@pytest.fixture
def celery_worker(shared_db, redis_db, settings, tmp_path):
    """Configures this process to publish to the test broker and yields a (not yet started) Worker."""
    from config.celery import app as celery_app

    settings.RUNS_EXECUTOR = "celery"
    settings.RUNS_LEASE_SECONDS = LEASE
    dispatch.reset_executor()
    previous_broker = celery_app.conf.broker_url
    celery_app.conf.broker_url = REDIS_URL
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": shared_db,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        "CELERY_UNACKED_RESTORE_INTERVAL": "1",
        "CELERY_UNACKED_RESTORE_THROTTLE": "1",
        "RUNS_EXECUTOR": "celery",
        "RUNS_LEASE_SECONDS": str(LEASE),
        "ALLOW_PRIVATE_NETWORK_TARGETS": "true",
        "CALLBACK_RETRY_BASE_SECONDS": "0.05",
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    worker = Worker(env, tmp_path / "celery.log")
    yield worker
    worker.stop()
    celery_app.conf.broker_url = previous_broker
    dispatch.reset_executor()


def post_background(api_client, app, key, question):
    response = api_client.post(f"/apps/{app.id}/v1/runs", {"input": {"question": question}, "background": True},
                               format="json", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "created"
    return response.json()["id"]


def terminal_events(run_id) -> int:
    return RunEvent.objects.filter(run_id=run_id, type__in=["run.completed", "run.failed", "run.canceled"]).count()


def test_a_worker_runs_background_runs_and_delivers_callbacks(api_client, actors, celery_worker, upstream):
    celery_worker.start()
    app = make_http_app(actors["project"], f"{upstream.url}/celery")
    run_ids = [post_background(api_client, app, actors["owner_key"], f"q{i}") for i in range(3)]
    with HttpStub(lambda r: StubResponse(503 if len(hook.requests) <= 2 else 200, {})) as hook:
        response = api_client.post(f"/apps/{app.id}/", {"input": {"question": "async"}, "execution_mode": "async",
                                                        "callbacks": [{"url": f"{hook.url}/done"}]},
                                   format="json", HTTP_AUTHORIZATION=f"Bearer {actors['owner_key']}")
        assert response.status_code == 202
        wait_for(lambda: CallbackDelivery.objects.filter(status="delivered").exists(), timeout=30, message="callback")
    runs = [wait_for(lambda i=i: Run.objects.filter(id=i, status="completed").first(), timeout=30, message="run end")
            for i in [*run_ids, response.json()["id"]]]
    assert [r.output["answer"]["query"]["q"] for r in runs] == [["q0"], ["q1"], ["q2"], ["async"]]
    assert all(terminal_events(r.id) == 1 and r.attempts == 1 for r in runs)
    assert len(hook.requests) == 3 and len({r.body for r in hook.requests}) == 1


def test_a_worker_killed_mid_run_and_restarted_ends_every_run_exactly_once(api_client, actors, celery_worker):
    calls: Counter[str] = Counter()
    lock = threading.Lock()
    in_flight = threading.Event()

    def slow_upstream(request):
        question = request.query["q"][0]
        with lock:
            calls[question] += 1
            if sum(calls.values()) >= 4:
                in_flight.set()  # the kill lands while this call is being served
        time.sleep(0.4)
        return echo(request)

    with HttpStub(slow_upstream) as upstream:
        app = make_http_app(actors["project"], f"{upstream.url}/slow")
        run_ids = {post_background(api_client, app, actors["owner_key"], f"run-{i:02d}"): f"run-{i:02d}" for i in range(20)}
        celery_worker.start()
        assert in_flight.wait(timeout=60), "the worker never reached the fourth run"
        celery_worker.kill()
        killed = [rid for rid in run_ids if Run.objects.get(id=rid).status == "started"]
        assert len(killed) == 1, "exactly one run was mid-flight when the worker died"
        celery_worker.start()  # "restarted": a new worker process on the same broker and database
        wait_for(lambda: Run.objects.filter(id__in=run_ids, status__in=Run.TERMINAL).count() == 20, timeout=120,
                 interval=0.2, message="all 20 runs to end")

    runs = {str(r.id): r for r in Run.objects.filter(id__in=run_ids)}
    # Every run ended exactly once, completed, with one terminal event and gap-free, unique sequences.
    for run_id, run in runs.items():
        assert run.status == "completed", (run_id, run.status, run.error)
        assert terminal_events(run_id) == 1
        sequences = list(RunEvent.objects.filter(run_id=run_id).order_by("sequence").values_list("sequence", flat=True))
        assert sequences == list(range(1, len(sequences) + 1))
        assert run.output["answer"]["query"]["q"] == [run_ids[run_id]]
    # The upstream saw each run once per attempt: once for every run, twice for the run the kill interrupted
    # (its node was being served when the worker died, and the redo called it again). Nothing else was redone.
    assert sum(calls.values()) == 20 + 1
    redone = runs[killed[0]]
    assert redone.attempts == 2 and calls[run_ids[killed[0]]] == 2
    assert all(run.attempts == 1 and calls[run_ids[rid]] == 1 for rid, run in runs.items() if rid != killed[0])
    started = list(RunEvent.objects.filter(run_id=redone.id, type="run.started").order_by("sequence")
                   .values_list("data", flat=True))
    assert started == [{"attempt": 1}, {"attempt": 2}]
