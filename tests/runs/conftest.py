"""Fixtures for runs that execute outside the test's own thread (executor threads, a live server, a
Celery worker in another process): they all need one database that every connection sees, committed.

- PostgreSQL: pytest-django's test database with `transactional_db` (data is committed; flushed after).
- SQLite: pytest-django's test database is in memory (one process; threads would contend on its shared
  cache), so these tests swap the default connection to a fresh SQLite *file* (copied from a template
  migrated once per session), WAL mode as in production, for the test's duration. Every thread that
  opens a connection meanwhile (executor pool, monitor, live server) opens the file; so does the
  Celery worker, by DATABASE_URL.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.db import connections

from tests import factories
from tests.support.admin import operator, operator_client, world  # noqa: F401  (tests/runs/test_admin.py)
from tests.support.databases import default_database


@pytest.fixture
def simple_app(project, upstream):
    """A private App whose version calls the upstream once with a shared key."""
    shared = factories.make_connection(
        project, name="simple-shared", config={"url": upstream.url, "api_key": factories.CANARIES["shared_api_key"]}
    )
    workflow = factories.make_workflow(project, "simple")
    version = factories.make_version(
        workflow, factories.definition(factories.http_node("call", ref={"id": str(shared.id)}, url=f"{upstream.url}/call"))
    )
    return factories.make_app(project, name="Simple", version=version)


def _default_database(name: str):
    return default_database(NAME=name)


def _vendor() -> str:
    return connections.settings["default"]["ENGINE"].rsplit(".", 1)[-1]


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory, django_db_blocker):
    if _vendor() != "sqlite3":
        return None
    path = tmp_path_factory.mktemp("rundb") / "template.sqlite3"
    with django_db_blocker.unblock(), _default_database(str(path)):
        call_command("migrate", verbosity=0, interactive=False)
    return path


@pytest.fixture
def shared_db(transactional_db, tmp_path, django_db_blocker, _sqlite_template, settings):
    """A committed database shared by threads and processes. Yields its DATABASE_URL.

    Depends on `transactional_db` statically: pytest-django only creates the test databases that some
    collected test asks for."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    if _sqlite_template is None:
        db = connections["default"].settings_dict
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        yield f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        return
    path = tmp_path / "db.sqlite3"
    shutil.copy(_sqlite_template, path)
    with django_db_blocker.unblock(), _default_database(str(path)):
        yield f"sqlite:///{path}"


@pytest.fixture
def thread_executor(settings):
    """The thread executor with a fresh pool; waits for its jobs at teardown."""
    from apps.runs import dispatch

    settings.RUNS_EXECUTOR = "thread"
    dispatch.reset_executor()
    executor = dispatch.get_executor()
    yield executor
    executor.shutdown(wait=True)
    dispatch.reset_executor()


@pytest.fixture
def live_url(shared_db):
    """pytest-django's LiveServer helper, started on the shared database."""
    from django.core.servers.basehttp import ThreadedWSGIServer
    from pytest_django.live_server_helper import LiveServer

    class Server(ThreadedWSGIServer):
        # Tests send up to 32 requests at once; Django's listen backlog of 10 overflows, and the kernel then
        # resets some of those connections before the server accepts them.
        request_queue_size = 128

    server = LiveServer("127.0.0.1:0", start=False)
    server.thread.server_class = Server
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def actors(shared_db):
    """Named actors on the shared database: the owner's project and key, and an outsider's."""
    project = factories.make_project("Acme", "Billing")
    outsider_project = factories.make_project("Globex", "Everything")
    return {
        "project": project,
        "owner_key": factories.make_key(project, name="owner"),
        "outsider_key": factories.make_key(outsider_project, name="outsider"),
        "outsider_project": outsider_project,
    }


def make_http_app(project, url: str, *, name: str = "Slow bot", params=None):
    """An App whose workflow calls `url` once (one http node), with the question as query parameter."""
    workflow = factories.make_workflow(project, f"wf-{name}")
    version = factories.make_version(workflow, factories.definition(
        factories.http_node("call", ref=None, url=url, params=params or {"q": "{{ input.question }}"}),
        output={"answer": "{{ nodes.call.output.body }}"},
    ))
    return factories.make_app(project, name=name, version=version)


def make_llm_app(project, base_url: str, *, name: str = "Chat bot"):
    connection = factories.make_connection(
        project, name=f"llm-{name}", type="openai",
        config={"api_key": factories.CANARIES["openai_key"], "base_url": base_url},
    )
    workflow = factories.make_workflow(project, f"wf-{name}")
    version = factories.make_version(workflow, {"nodes": [
        {"id": "input", "type": "input", "fields": {"question": {"type": "string", "required": True}}},
        {"id": "chat", "type": "llm", "depends_on": ["input"], "connection": {"id": str(connection.id)},
         "config": {"model": "stub-model", "prompt": "{{ input.question }}"}},
        {"id": "output", "type": "output", "depends_on": ["chat"], "fields": {"answer": "{{ nodes.chat.output.text }}"}},
    ]})
    return factories.make_app(project, name=name, version=version)


class StreamingLlmStub:
    """An OpenAI-compatible `/chat/completions` on loopback: with `stream: true` it answers
    text/event-stream, one chunk per token, `delay` seconds apart, then `[DONE]`."""

    def __init__(self, tokens: list[str], *, delay: float = 0.0):
        self.tokens = tokens
        self.delay = delay
        self.requests: list[dict] = []
        self.authorizations: list[str] = []
        self.chunks_sent = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                stub.requests.append(body)
                stub.authorizations.append(self.headers.get("Authorization", ""))
                if not body.get("stream"):
                    payload = json.dumps({"choices": [{"message": {"content": "".join(stub.tokens)}}]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for token in stub.tokens:
                        chunk = {"choices": [{"delta": {"content": token}}]}
                        self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
                        stub.chunks_sent += 1
                        time.sleep(stub.delay)
                    self._chunk(b"data: [DONE]\n\n")
                    self._chunk(b"")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _chunk(self, data: bytes):
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def wait_for(predicate, *, timeout: float = 20.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}")


REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
