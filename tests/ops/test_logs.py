"""Logs (SPEC §15): JSON lines in production, each line of a request carrying its `request_id` (echoed as
`X-Request-ID`) and `app_id`, `run_id`, `user_id` where known, in the web process, the thread executor and a
Celery worker; no token or secret in any line, gunicorn's access log included.

In-process flows are captured through the product's own LOGGING pieces (the `json` formatter and the
console handler's filters) on a buffer; the worker and gunicorn write their real output to a file.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import environ
import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.utils.module_loading import import_string

from apps.connect import tokens
from apps.core import log_context
from apps.core.log_formats import log_format
from apps.runs.models import Run
from tests import factories
from tests.conftest import assert_no_canary
from tests.connect.conftest import build_connect_setup
from tests.runs.conftest import _sqlite_template, actors, make_http_app, shared_db, wait_for  # noqa: F401  (fixtures)
from tests.runs.processes import Gunicorn
from tests.runs.test_celery_executor import celery_worker, redis_db  # noqa: F401  (fixtures)
from tests.support.http_stub import HttpStub, StubResponse

REQUEST_ID = "req-7f3a:42.b_c-d"  # every character a well-formed request ID may have


def _from_spec(spec: dict):
    spec = dict(spec)
    return import_string(spec.pop("()"))(**spec)


class JsonLog:
    """Lines written, in the product's JSON format, by records of the test's thread and of the engine's
    branch threads (in-process flows run there; another test's leftover thread must not add lines)."""

    def __init__(self):
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(_from_spec(settings.LOGGING["formatters"]["json"]))
        for name in settings.LOGGING["handlers"]["console"]["filters"]:
            self.handler.addFilter(_from_spec(settings.LOGGING["filters"][name]))
        here = threading.get_ident()
        self.handler.addFilter(lambda r: r.thread == here or r.threadName.startswith("engine-node"))

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines()]  # one JSON object per line, or this fails

    def of(self, logger: str) -> list[dict]:
        return [line for line in self.lines() if line["logger"] == logger]


@contextmanager
def json_log():
    log = JsonLog()
    root = logging.getLogger()
    root.addHandler(log.handler)
    try:
        yield log
    finally:
        root.removeHandler(log.handler)


def assert_every_line_has(lines: list[dict], **fields) -> None:
    assert lines
    for line in lines:
        assert {name: line.get(name) for name in fields} == fields, line


def run_line(lines: list[dict], run_id: str) -> dict:
    [line] = [line for line in lines if line["logger"] == "apps.runs.execution" and line.get("run_id") == run_id]
    return line


# ------------------------------------------------------------------------------------------ the rules


@pytest.mark.parametrize(("env", "expected"), [
    ({"DEBUG": "false"}, "json"),
    ({"DEBUG": "true"}, "text"),
    ({}, "text"),  # DEBUG's own default is on (development)
    ({"DEBUG": "true", "LOG_FORMAT": "json"}, "json"),
    ({"DEBUG": "false", "LOG_FORMAT": "text"}, "text"),
])
def test_json_in_production_and_text_in_development(monkeypatch, env, expected):
    for name in ("DEBUG", "LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert log_format(environ.Env()) == expected


def test_an_unknown_log_format_stops_the_process():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "LOG_FORMAT": "xml"}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert result.returncode != 0
    assert ImproperlyConfigured.__name__ in result.stderr and "LOG_FORMAT must be one of json, text" in result.stderr


@pytest.mark.parametrize("incoming", [REQUEST_ID, "a", "0" * 128, "4bf92f3577b34da6a3ce929d0e0e4736"])
def test_a_well_formed_request_id_is_kept(incoming):
    assert log_context.request_id_from(incoming) == incoming


@pytest.mark.parametrize("incoming", [None, "", "0" * 129, "two words", "x\ny", "a=b", 'quote"d', "id;drop", "é"])
def test_anything_else_gets_a_new_request_id(incoming):
    new = log_context.request_id_from(incoming)
    assert new != incoming and len(new) == 32 and int(new, 16) >= 0
    assert log_context.request_id_from(incoming) != new  # new each time


def test_the_json_formatter_redacts_the_whole_line_traceback_included():
    token = "eyJhbGciOiJIUzI1NiJ9.canary-token-in-a-traceback"
    with json_log() as log:
        try:
            raise ValueError(f"GET https://api.example.com/x?access_token={token} failed")
        except ValueError:
            logging.getLogger("apps.test").exception("upstream %s", "call", extra={"url": f"/cb?code={token}"})
    [line] = log.lines()
    assert token not in log.text
    assert "access_token=[redacted]" in line["exc_info"] and line["url"] == "/cb?code=[redacted]"
    assert (line["level"], line["logger"], line["message"]) == ("ERROR", "apps.test", "upstream call")


def test_the_text_formatter_shows_the_context_and_redacts_too():
    spec = dict(settings.LOGGING["formatters"]["plain"])
    formatter = import_string(spec.pop("()"))(fmt=spec.pop("format"))
    record = logging.LogRecord("apps.test", logging.INFO, __file__, 1, "opened /connect?token=%s", ("secret-jwt",), None)
    record.request_id, record.run_id = "r-1", "run-9"
    assert formatter.format(record).endswith("apps.test opened /connect?token=[redacted] [request_id=r-1 run_id=run-9]")


# ---------------------------------------------------------------------------------- in the web process


@pytest.fixture
def run_app(project, upstream):
    """Two HTTP nodes side by side (the engine runs them on branch threads): one with a shared connection,
    one with user-42's linked credentials; both secrets are canaries."""
    shared = factories.make_connection(project, config={"url": upstream.url, "api_key": factories.CANARIES["shared_api_key"]})
    workflow = factories.make_workflow(project)
    requirement = factories.make_requirement(workflow)
    side_by_side = factories.definition(
        factories.http_node("shared", ref={"id": str(shared.id)}, url=f"{upstream.url}/shared"),
        factories.http_node("mine", ref={"requirement": str(requirement.id)}, url=f"{upstream.url}/mine"),
        output={"a": "{{ nodes.shared.output.body }}", "b": "{{ nodes.mine.output.body }}"},
    )
    side_by_side["nodes"][-1]["depends_on"] = ["shared", "mine"]
    version = factories.make_version(workflow, side_by_side)
    app = factories.make_app(project, version=version)
    factories.link_end_user(app, requirement, "user-42", {"url": upstream.url, "api_key": factories.CANARIES["user42_api_key"]})
    return app


def post_run(client, app, key, body, **headers):
    return client.post(f"/apps/{app.id}/v1/runs", body, format="json", HTTP_AUTHORIZATION=f"Bearer {key}", **headers)


@pytest.mark.django_db
def test_a_sync_run_logs_json_lines_with_its_request_run_app_and_user(api_client, run_app, owner_key):
    with json_log() as log:
        response = post_run(api_client, run_app, owner_key, {"input": {"question": "q"}, "user_id": "user-42"},
                            HTTP_X_REQUEST_ID=REQUEST_ID)
    assert response.status_code == 200 and response.json()["status"] == "completed", response.content
    assert response["X-Request-ID"] == REQUEST_ID
    run_id = response.json()["id"]
    lines = log.lines()
    assert_every_line_has(lines, request_id=REQUEST_ID, app_id=str(run_app.id))
    line = run_line(lines, run_id)
    assert line["user_id"] == "user-42" and line["level"] == "INFO"
    assert (line["status"], line["mode"]) == ("completed", "sync") and line["duration_ms"] >= 0
    assert line["message"] == f"run {run_id} completed in {line['duration_ms']} ms"
    assert_no_canary(log.text)
    assert owner_key not in log.text


@pytest.mark.django_db
def test_a_line_logged_on_an_engine_branch_thread_names_the_run(api_client, run_app, owner_key, settings):
    """With private targets refused, both nodes (run side by side) log the refusal from their branch thread."""
    settings.ALLOW_PRIVATE_NETWORK_TARGETS = False
    with json_log() as log:
        response = post_run(api_client, run_app, owner_key, {"input": {"question": "q"}, "user_id": "user-42"},
                            HTTP_X_REQUEST_ID=REQUEST_ID)
    assert response.status_code == 200 and response.json()["status"] == "failed", response.content
    refusals = log.of("apps.engine.netguard")
    assert len(refusals) == 2
    assert_every_line_has(refusals, request_id=REQUEST_ID, app_id=str(run_app.id), run_id=response.json()["id"],
                          user_id="user-42")
    assert_no_canary(log.text)


@pytest.mark.django_db
@pytest.mark.parametrize("sent", [None, "bad id with spaces"])
def test_without_a_well_formed_request_id_the_platform_makes_one_and_answers_it(api_client, run_app, owner_key, sent):
    headers = {"HTTP_X_REQUEST_ID": sent} if sent else {}
    with json_log() as log:
        response = post_run(api_client, run_app, owner_key, {"input": {"question": "q"}, "user_id": "user-42"}, **headers)
    made = response["X-Request-ID"]
    assert len(made) == 32 and made != sent
    assert_every_line_has(log.lines(), request_id=made)


@pytest.mark.django_db
def test_every_answer_carries_a_request_id_even_a_refusal_before_any_view(client):
    assert len(client.get("/v1/workflows", HTTP_HOST="unknown.example.com")["X-Request-ID"]) == 32  # 400: host
    assert "X-Request-ID" not in client.get("/healthz")  # probes stay as cheap as they were


@pytest.mark.django_db
def test_the_connect_flow_logs_each_step_with_the_app_and_end_user(api_client, project, owner_key):
    setup = build_connect_setup(project)
    browser = Client()
    with json_log() as log:
        minted = api_client.post(f"/apps/{setup.app.id}/v1/connect/tokens", {"user_id": "user-42"}, format="json",
                                 HTTP_AUTHORIZATION=f"Bearer {owner_key}", HTTP_X_REQUEST_ID="req-mint")
        assert minted.status_code == 201, minted.content
        token = minted.json()["token"]
        opened = browser.get("/connect", {"token": token}, HTTP_X_REQUEST_ID="req-open")
        assert opened.status_code == 302 and opened["X-Request-ID"] == "req-open"
        linked = browser.post(f"/connect/requirements/{setup.billing.id}/credentials", {
            "f-url": "https://billing.example.com", "f-api_key": factories.CANARIES["user42_api_key"],
            "f-header": "Authorization", "f-prefix": "Bearer ",
        }, HTTP_X_REQUEST_ID="req-link")
        assert linked.status_code == 302, linked.content
        status = api_client.get("/v1/connect/requirements", HTTP_AUTHORIZATION=f"Bearer {token}",
                                HTTP_X_REQUEST_ID="req-api")
        assert status.status_code == 401  # the token was exchanged on the page: spent for the API
    lines = log.lines()
    steps = {line["request_id"]: line for line in lines if line["logger"].startswith("apps.connect")}
    assert set(steps) == {"req-mint", "req-open", "req-link"}
    assert steps["req-mint"]["message"].startswith("connect token minted, valid until ")
    assert steps["req-open"]["message"] == "connect link opened: token exchanged for a page session"
    assert steps["req-link"]["message"].startswith("end-user credentials saved for requirement billing")
    assert_every_line_has(list(steps.values()), app_id=str(setup.app.id), user_id="user-42")
    assert all(line.get("request_id") in steps for line in lines), lines
    assert token not in log.text and token.split(".")[2] not in log.text
    assert_no_canary(log.text)


@pytest.mark.django_db
def test_a_409_run_logs_why_with_its_ids(api_client, run_app, owner_key):
    """user-77 linked nothing: the run stops at resolution (409 requirements_unsatisfied)."""
    with json_log() as log:
        response = post_run(api_client, run_app, owner_key, {"input": {"question": "q"}, "user_id": "user-77"},
                            HTTP_X_REQUEST_ID="req-409")
    assert response.status_code == 409, response.content
    assert response["X-Request-ID"] == "req-409"
    lines = log.lines()
    assert_every_line_has(lines, request_id="req-409", app_id=str(run_app.id), user_id="user-77")
    [line] = log.of("apps.runs.execution")
    assert (line["status"], line["error_code"]) == ("failed", "requirements_unsatisfied")
    assert_no_canary(log.text)


@pytest.mark.django_db
def test_a_5xx_answer_logged_by_django_after_the_middleware_carries_the_request_id(api_client, project, owner_key):
    """Django writes `django.request` lines for 5xx answers after the whole middleware chain has returned:
    the request's context must still be there."""
    with HttpStub(lambda r: StubResponse(500, {"detail": "upstream broke"})) as stub:
        app = make_http_app(project, f"{stub.url}/call")
        with json_log() as log:
            response = post_run(api_client, app, owner_key, {"input": {"question": "q"}, "error_on_node_failure": True},
                                HTTP_X_REQUEST_ID="req-502")
    assert response.status_code == 502
    [django_line] = log.of("django.request")
    assert django_line["message"].startswith("Bad Gateway: ")
    assert (django_line["request_id"], django_line["app_id"]) == ("req-502", str(app.id))
    assert django_line["run_id"] == response.json()["error"]["details"]["run_id"]


@pytest.mark.django_db
def test_a_401_logs_nothing_and_answers_its_request_id(api_client, run_app):
    with json_log() as log:
        response = post_run(api_client, run_app, "dynamiq_acc_not-a-key", {"input": {"question": "q"}},
                            HTTP_X_REQUEST_ID="req-401")
    assert response.status_code == 401 and response["X-Request-ID"] == "req-401"
    assert log.lines() == []  # django.request logs 4xx at WARNING, below its ERROR level; gunicorn's access line says it


@pytest.mark.django_db(transaction=True)
def test_a_background_run_on_the_thread_executor_logs_with_the_accepting_request_id(api_client, run_app, owner_key,
                                                                                    settings):
    settings.RUNS_EXECUTOR = "thread"
    with json_log() as log:
        log.handler.filters[-1:] = [lambda r: r.threadName.startswith(("runs", "engine-node"))]  # the pool's lines
        response = post_run(api_client, run_app, owner_key, {"input": {"question": "q"}, "user_id": "user-42",
                                                             "background": True}, HTTP_X_REQUEST_ID="req-bg-thread")
        assert response.status_code == 202, response.content
        run_id = response.json()["id"]
        run = wait_for(lambda: Run.objects.filter(id=run_id, status__in=Run.TERMINAL).first(), message="the run to end")
        assert run.status == "completed", run.error
        wait_for(lambda: "apps.runs.execution" in log.text, message="the run's line")
    line = run_line(log.lines(), run_id)
    assert (line["request_id"], line["app_id"], line["user_id"]) == ("req-bg-thread", str(run_app.id), "user-42")
    assert line["mode"] == "background"
    assert_no_canary(log.text)


# ------------------------------------------------------------------------------ in other processes


@pytest.mark.redis
@pytest.mark.slow
def test_a_background_run_in_a_celery_worker_logs_json_with_the_accepting_request_id(
    api_client, actors, celery_worker, upstream,  # noqa: F811
):
    celery_worker.env["LOG_FORMAT"] = "json"
    celery_worker.start()
    project = actors["project"]
    shared = factories.make_connection(project, config={"url": upstream.url, "api_key": factories.CANARIES["shared_api_key"]})
    workflow = factories.make_workflow(project)
    version = factories.make_version(workflow, factories.definition(
        factories.http_node("shared", ref={"id": str(shared.id)}, url=f"{upstream.url}/shared"),
    ))
    app = factories.make_app(project, version=version)
    response = post_run(api_client, app, actors["owner_key"], {"input": {"question": "q"}, "user_id": "user-42",
                                                               "background": True}, HTTP_X_REQUEST_ID="req-bg-celery")
    assert response.status_code == 202, response.content
    run_id = response.json()["id"]
    wait_for(lambda: Run.objects.filter(id=run_id, status="completed").exists(), timeout=30, message="the run")
    wait_for(lambda: f'"run {run_id} completed' in celery_worker.log.read_text(), message="the worker's run line")
    celery_worker.stop()

    text = celery_worker.log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]  # the banner is not a log line
    assert any(line["message"].endswith(" ready.") for line in lines)
    run_lines = [line for line in lines if line.get("run_id") == run_id]
    assert_every_line_has(run_lines, request_id="req-bg-celery", app_id=str(app.id), user_id="user-42")
    line = run_line(lines, run_id)
    assert (line["status"], line["mode"]) == ("completed", "background")
    task_lines = [line for line in lines if line["logger"] == "celery.app.trace"]  # "Task ... succeeded"
    assert_every_line_has(task_lines, request_id="req-bg-celery", run_id=run_id)
    assert_no_canary(text)
    assert actors["owner_key"] not in text


@pytest.mark.slow
def test_gunicorn_writes_json_access_lines_with_the_request_id_and_no_token(shared_db, settings, tmp_path):  # noqa: F811
    # DEBUG off refuses the public development keys: this process takes fresh ones too, before it stores anything.
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]
    setup = build_connect_setup(factories.make_project("Acme", "Ops"))
    token, _ = tokens.mint(app_id=str(setup.app.id), user_id="user-42", redirect_url="")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "RUNS_", "LOG_"))},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "false",  # production: JSON lines by default
        "SECRET_KEY": settings.SECRET_KEY,
        "FERNET_KEYS": ",".join(settings.FERNET_KEYS),
        "CREDENTIALS_API_TOKEN": secrets.token_urlsafe(32),
        "SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback, no TLS proxy in front
        "PLATFORM_URL": settings.PLATFORM_URL,
        "DATABASE_URL": shared_db,
        "RUNS_RECOVER_ON_START": "false",
        "PYTHONUNBUFFERED": "1",
    }
    server = Gunicorn(env, tmp_path / "gunicorn.log").start()
    try:
        server.wait_ready(host=settings.PLATFORM_HOST)
        status, _ = server.request("GET", f"/apps/{setup.app.id}/v1/runs?token={token}", host=settings.PLATFORM_HOST,
                                   headers={"X-Request-ID": "req-gunicorn-401", "Authorization": f"Bearer {token}"})
        assert status == 401
        status, _ = server.request("GET", f"/connect?lang=en&token={token}", host=settings.PLATFORM_HOST,
                                   headers={"X-Request-ID": "req-gunicorn-page"})
        assert status in (302, 401)
    finally:
        Gunicorn.stop_all([server])
    text = server.log.read_text()
    assert token not in text and token.split(".")[2] not in text
    lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON: master, worker, access
    assert any(line["message"].startswith("Listening at: ") for line in lines)
    access = {line["request_id"]: line for line in lines if line["logger"] == "gunicorn.access" and "request_id" in line}
    assert access["req-gunicorn-401"]["status"] == 401
    assert access["req-gunicorn-401"]["path"] == f"/apps/{setup.app.id}/v1/runs?token=[redacted]"
    assert access["req-gunicorn-401"]["method"] == "GET" and access["req-gunicorn-401"]["duration_ms"] >= 0
    assert access["req-gunicorn-page"]["path"] == "/connect?lang=en&token=[redacted]"
    assert "token=[redacted]" in access["req-gunicorn-page"]["message"]
    assert_no_canary(text)
