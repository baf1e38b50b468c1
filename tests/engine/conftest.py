"""Fixtures for the engine tests: real HTTP servers on loopback standing in for third-party APIs.

Nothing here imports Django: the engine is pure Python and its tests run without settings.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest

from apps.engine import (
    Resolution,
    ResolvedConnection,
    RunContext,
    RunOptions,
    execute,
    make_http_client,
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status: int, payload, headers: dict | None = None) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        self.handle_any()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET


class EchoHandler(_Handler):
    """Echoes the request as JSON. `/status/<code>` answers that code; `/slow` waits 0.3 s first;
    `/redirect?to=<url>` answers 302 to that URL; `/text` answers plain text."""

    def handle_any(self):
        parts = urlsplit(self.path)
        raw = self._body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        if parts.path.startswith("/redirect"):
            target = dict(parse_qsl(parts.query))["to"]
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if parts.path.startswith("/slow"):
            time.sleep(0.3)
        if parts.path == "/text":
            raw_text = b"plain words"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(raw_text)))
            self.end_headers()
            self.wfile.write(raw_text)
            return
        status = 200
        if parts.path.startswith("/status/"):
            status = int(parts.path.rsplit("/", 1)[1])
        self.send_json(
            status,
            {
                "method": self.command,
                "path": parts.path,
                "query": dict(parse_qsl(parts.query, keep_blank_values=True)),
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            },
        )


class UnauthorizedHandler(_Handler):
    """401 unless the bearer token is `fresh-token` (what a refresh would yield)."""

    def handle_any(self):
        self._body()
        auth = self.headers.get("Authorization", "")
        if auth == "Bearer fresh-token":
            self.send_json(200, {"ok": True, "auth": auth})
        else:
            self.send_json(401, {"error": "invalid_token", "auth_seen": auth})


class OpenAIHandler(_Handler):
    """A minimal OpenAI-compatible chat completions API: streams three chunks when asked to."""

    chunks = ("Hel", "lo, ", "world")

    def handle_any(self):
        payload = json.loads(self._body() or b"{}")
        self.server.requests.append({"headers": dict(self.headers), "body": payload, "path": self.path})
        if self.path != "/v1/chat/completions":
            self.send_json(404, {"error": {"message": "not found"}})
            return
        if self.headers.get("Authorization") != "Bearer sk-test-123456":
            self.send_json(401, {"error": {"message": "Incorrect API key provided"}})
            return
        if not payload.get("stream"):
            self.send_json(200, {
                "choices": [{"message": {"role": "assistant", "content": "".join(self.chunks)}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
            })
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in self.chunks:
            data = {"choices": [{"delta": {"content": chunk}}]}
            self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()
            time.sleep(self.server.delay)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def _serve(handler) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.requests = []
    server.delay = 0.0
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def echo_server():
    yield from _serve(EchoHandler)


@pytest.fixture(scope="session")
def unauthorized_server():
    yield from _serve(UnauthorizedHandler)


@pytest.fixture
def openai_server():
    yield from _serve(OpenAIHandler)


@pytest.fixture(scope="session")
def http_client():
    """Loopback test servers are private addresses: these tests run with the guard lifted, as in dev."""
    with make_http_client(allow_private=True, timeout=5.0) as client:
        yield client


class FakeResolver:
    """A real CredentialResolver: answers from dicts and records every call."""

    def __init__(
        self,
        connections: dict[str, ResolvedConnection] | None = None,
        requirements: dict[str, ResolvedConnection] | None = None,
        unsatisfied: list[dict] | None = None,
        refreshed: ResolvedConnection | None = None,
    ) -> None:
        self.connections = connections or {}
        self.requirements = requirements or {}
        self.unsatisfied = unsatisfied or []
        self.refreshed = refreshed
        self.resolve_calls: list[dict] = []
        self.unauthorized_calls: list[ResolvedConnection] = []

    def resolve(self, *, connection_ids: Sequence[str], requirement_ids: Sequence[str], app_id, user_id, run_id):
        self.resolve_calls.append({
            "connection_ids": list(connection_ids), "requirement_ids": list(requirement_ids),
            "app_id": app_id, "user_id": user_id, "run_id": run_id,
        })
        return Resolution(
            connections={k: v for k, v in self.connections.items() if k in connection_ids},
            requirements={k: v for k, v in self.requirements.items() if k in requirement_ids},
            unsatisfied=list(self.unsatisfied),
        )

    def on_unauthorized(self, *, connection, run_id):
        self.unauthorized_calls.append(connection)
        if self.refreshed is not None and connection.connection_id == self.refreshed.connection_id \
                and connection.config != self.refreshed.config:
            return self.refreshed
        return None


def conn(connection_id: str, type: str, owner: str = "project", **config) -> ResolvedConnection:
    return ResolvedConnection(connection_id=connection_id, type=type, config=config, owner=owner)


def workflow(*nodes: dict, fields: dict | None = None, output: dict | None = None, output_deps=None) -> dict:
    """input -> nodes... -> output. Nodes without depends_on depend on input."""
    body = [dict(n) for n in nodes]
    for node in body:
        node.setdefault("depends_on", ["input"])
    return {"nodes": [
        {"id": "input", "type": "input", "fields": fields or {}},
        *body,
        {"id": "output", "type": "output", "depends_on": output_deps or [n["id"] for n in body] or ["input"],
         "fields": output or {}},
    ]}


@pytest.fixture
def run(http_client):
    """run(definition, input, resolver=..., **options) -> (RunResult, events)."""

    def _run(definition, run_input=None, *, resolver=None, client=None, is_canceled=None, files=None,
             db_connect=None, allow_private_network=True, **options):
        events: list[tuple[str, dict]] = []
        result = execute(
            definition=definition,
            run_input=run_input or {},
            resolver=resolver or FakeResolver(),
            context=RunContext(app_id="app-1", user_id="alice", run_id="run-1", files=files or []),
            options=RunOptions(**options),
            http_client=client or http_client,
            on_event=lambda type, data: events.append((type, data)),
            is_canceled=is_canceled,
            db_connect=db_connect,
            allow_private_network=allow_private_network,
        )
        return result, events

    return _run
