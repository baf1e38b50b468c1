"""SPEC §13 single flight against a real provider: 32 concurrent runs through the App-host run endpoint and the
refresh job, racing on one end-user OAuth2 link near expiry, make ONE token call.

The provider is django-oauth-toolkit in a gunicorn process apart, with its own SQLite database
(tests/oauth_provider/standalone_*.py), rotating refresh tokens with reuse protection: a second refresh with
the old refresh token would be refused and revoke the grant, and an access token used after the rotation is
refused by its resource endpoint (`/me`), so a run that did not get the winner's token fails. Token calls are
counted by the provider (one line per POST to its token endpoint). A provider of its own database lets SQLite
run this too: the platform holds its database write lock during the token call, which an in-process provider
writing to the same file would wait on.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from django.db import connections
from django.utils import timezone

from apps.connections.models import Connection
from apps.connections.services import oauth_provider_create
from apps.scheduler.services import job_run_if_due
from apps.workflows.services import requirement_create
from tests import factories
from tests.oauth_provider.support import CLIENT_SECRET, PROVIDER_USER
from tests.runs.conftest import _sqlite_template, live_url, shared_db, wait_for  # noqa: F401  (fixtures)
from tests.runs.processes import ROOT, stop_process_group

RUNS = 32
_LISTENING = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+)")


class Provider:
    def __init__(self, tmp_path: Path):
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "PROVIDER_DB": str(tmp_path / "provider.sqlite3"),
                    "PROVIDER_TOKEN_LOG": str(tmp_path / "token-calls.log"),
                    "DJANGO_SETTINGS_MODULE": "tests.oauth_provider.standalone_settings"}
        self.log = tmp_path / "provider.log"
        self.cwd = tmp_path  # not the project root: the platform's gunicorn.conf.py is not the provider's
        self.process: subprocess.Popen | None = None
        self.url = ""

    def grant(self) -> dict[str, str]:
        """Migrate, register the platform as a client, and return a fresh grant (access and refresh token)."""
        done = subprocess.run(
            [sys.executable, "-m", "tests.oauth_provider.standalone_process", "platform-client", "http://localhost/cb"],
            cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def start(self) -> Provider:
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", "8", "--bind", "127.0.0.1:0",
                 "--no-control-socket", "tests.oauth_provider.standalone_process:application"],
                cwd=self.cwd, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
            )

        def listening():
            assert self.process.poll() is None, self.log.read_text(errors="replace")[-3000:]
            match = _LISTENING.search(self.log.read_bytes())
            return int(match[1]) if match else None

        self.url = f"http://127.0.0.1:{wait_for(listening, timeout=60, message='the provider to listen')}"

        def answering():
            try:
                return httpx.get(f"{self.url}/me", timeout=2, trust_env=False).status_code == 401
            except httpx.HTTPError:
                return False

        wait_for(answering, timeout=60, interval=0.1, message="the provider to answer")
        return self

    def token_calls(self) -> list[str]:
        path = Path(self.env["PROVIDER_TOKEN_LOG"])
        return path.read_text().split() if path.exists() else []

    def stop(self) -> None:
        stop_process_group(self.process)


@pytest.fixture
def provider(tmp_path):
    provider = Provider(tmp_path)
    provider.tokens = provider.grant()
    provider.start()
    yield provider
    provider.stop()


def test_32_runs_and_the_refresh_job_racing_near_expiry_make_one_token_call(provider, live_url, shared_db):  # noqa: F811
    project = factories.make_project("Acme", "CRM")
    key = factories.make_key(project)
    oauth = oauth_provider_create(
        project=project, name="CRM", authorize_url=f"{provider.url}/o/authorize/", token_url=f"{provider.url}/o/token/",
        client_id="platform-client", client_secret=CLIENT_SECRET, scopes=["read"],
    )
    workflow = factories.make_workflow(project, "contacts")
    crm = requirement_create(
        workflow=workflow, name="crm", title="Your CRM account", description="",
        spec={"connection_type": "oauth2", "provider_id": str(oauth.id), "scopes": ["read"],
              "config": {"url": provider.url}},
    )
    version = factories.make_version(workflow, factories.definition(
        factories.http_node("me", ref={"requirement": str(crm.id)}, url=f"{provider.url}/me"),
        output={"me": "{{ nodes.me.output.body }}", "status": "{{ nodes.me.output.status_code }}"},
    ))
    app = factories.make_app(project, name="CRM bot", version=version)
    expires_at = int(time.time()) + 30  # inside the run-time margin (60 s), and due for the job
    link = factories.link_end_user(app, crm, "user-42", {
        "provider_id": str(oauth.id), "scopes": ["read"], "access_token": provider.tokens["access_token"],
        "refresh_token": provider.tokens["refresh_token"], "expires_at": expires_at, "token_type": "Bearer"})
    Connection.objects.filter(pk=link.connection_id).update(
        provider=oauth, expires_at=datetime.fromtimestamp(expires_at, tz=UTC),
        next_refresh_at=timezone.now() - timedelta(seconds=1))

    barrier = threading.Barrier(RUNS + 1)
    answers: list[httpx.Response] = []
    job: list = []
    errors: list[BaseException] = []

    def run():
        try:
            barrier.wait()
            answers.append(httpx.post(
                f"{live_url}/apps/{app.id}/v1/runs", json={"input": {"question": "who am I?"}, "user_id": "user-42"},
                headers={"Authorization": f"Bearer {key}"}, timeout=120, trust_env=False))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def refresh_job():
        try:
            barrier.wait()
            job.append(job_run_if_due("connections.refresh_due"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(RUNS)] + [threading.Thread(target=refresh_job)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not errors, errors
    token_calls = provider.token_calls()
    print(f"token-endpoint calls: {len(token_calls)} for {RUNS} runs and the refresh job")
    assert token_calls == ["200"]
    assert len(answers) == RUNS
    for answer in answers:
        assert answer.status_code == 200, answer.text[:500]
        body = answer.json()
        assert body["status"] == "completed", body
        assert body["output"]["me"] == {"sub": PROVIDER_USER, "client_id": "platform-client"}, body
    assert job[0][0] is True  # the job ran (it refreshed, or found the runs' fresh token and skipped)
    connection = Connection.objects.get(pk=link.connection_id)
    assert connection.status == Connection.Status.ACTIVE and connection.health == Connection.Health.OK
    assert connection.config["refresh_token"] != provider.tokens["refresh_token"]  # rotated, the new one kept
    assert connection.next_refresh_at > timezone.now() + timedelta(minutes=30)
