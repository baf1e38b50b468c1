"""One background run through a real Celery worker, with nothing but requirements.txt installed.

Run by scripts/check-production-install with the Python of a fresh virtualenv (requirements.txt alone), so a
module that only the test requirements bring in (kombu's Redis transport once needed `packaging`, which
only they installed) fails here instead of in production, where every background run would stay `created`.

Its own state only: a SQLite file in WORKDIR, its own Celery queue and Redis key prefix (deleted at the
end), production settings (DEBUG off, generated secrets). The web tier is Django's test client in this
process (it enqueues exactly as gunicorn would); the worker is `celery -A config worker` in a subprocess.
Exits 0 when the run completed with the expected output.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 60.0


def configure(workdir: Path) -> dict[str, str]:
    from cryptography.fernet import Fernet

    name = f"prod-install-{os.getpid()}-{secrets.token_hex(4)}"
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FERNET_KEYS": Fernet.generate_key().decode(),
        "CREDENTIALS_API_TOKEN": secrets.token_urlsafe(32),
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "MEDIA_ROOT": str(workdir / "media"),
        "RUNS_EXECUTOR": "celery",
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
        "CELERY_QUEUE": name,
        "CELERY_KEY_PREFIX": f"{name}:",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    return env


def start_worker(workdir: Path) -> subprocess.Popen:
    log = workdir / "worker.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=INFO",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{os.environ['CELERY_QUEUE']}@%h"],
        cwd=ROOT, env=os.environ.copy(), stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + TIMEOUT
    while b" ready." not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            sys.exit(f"the Celery worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return process


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def delete_own_keys() -> None:
    import redis

    client = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    keys = list(client.scan_iter(match=f"{os.environ['CELERY_KEY_PREFIX']}*", count=1000))
    if keys:
        client.delete(*keys)


def one_background_run() -> dict:
    from django.test import Client

    from apps.accounts.services import access_key_create, project_get_or_create
    from apps.deployments.services import app_create, deploy
    from apps.runs.models import Run
    from apps.workflows.services import workflow_create, workflow_version_create

    project = project_get_or_create(organization_name="Ops", project_name="Install check")
    _, key = access_key_create(organization=project.organization, project=project, name="install-check")
    workflow = workflow_create(project=project, name="echo")
    version = workflow_version_create(workflow=workflow, actor="cli:install-check", definition={"nodes": [
        {"id": "input", "type": "input", "fields": {"question": {"type": "string", "required": True}}},
        {"id": "shout", "type": "template", "depends_on": ["input"], "config": {"template": "{{ input.question | upper }}"}},
        {"id": "output", "type": "output", "depends_on": ["shout"], "fields": {"answer": "{{ nodes.shout.output.text }}"}},
    ]})
    app = app_create(project=project, name="Install check")
    deploy(app=app, version=version, actor="cli:install-check")

    response = Client().post(f"/apps/{app.id}/v1/runs", {"input": {"question": "queued"}, "background": True},
                             content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}", secure=True)
    if response.status_code != 202:
        sys.exit(f"POST /v1/runs answered {response.status_code}: {response.content[:500]!r}")
    run_id = response.json()["id"]
    deadline = time.monotonic() + TIMEOUT
    while (run := Run.objects.get(id=run_id)).status not in ("completed", "failed", "cancelled"):
        if time.monotonic() > deadline:
            sys.exit(f"run {run_id} still `{run.status}` after {TIMEOUT:.0f} s: was it ever enqueued?")
        time.sleep(0.2)
    return {"id": str(run.id), "status": run.status, "output": run.output, "error": run.error}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    workdir = parser.parse_args().workdir
    configure(workdir)
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    worker = start_worker(workdir)
    try:
        result = one_background_run()
    finally:
        stop(worker)
        delete_own_keys()
    print(json.dumps(result))
    if result["status"] != "completed" or result["output"] != {"answer": "QUEUED"}:
        sys.exit(f"the background run did not complete as expected; worker log:\n{(workdir / 'worker.log').read_text()[-3000:]}")
    print("production install: one background run completed through a Celery worker")


if __name__ == "__main__":
    main()
