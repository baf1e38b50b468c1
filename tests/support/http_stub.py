"""Real HTTP servers on loopback standing in for third-party APIs in tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class StubResponse:
    status: int = 200
    body: Any = field(default_factory=lambda: {"ok": True})
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[RecordedRequest], StubResponse]


def echo(request: RecordedRequest) -> StubResponse:
    """Answer with what was received (like httpbin's /anything): method, path, query, headers, body."""
    body: Any
    try:
        body = request.json()
    except ValueError:
        body = request.body.decode(errors="replace")
    return StubResponse(
        200,
        {"method": request.method, "path": request.path, "query": request.query, "headers": request.headers,
         "body": body},
    )


class HttpStub:
    """A threaded HTTP/1.1 server on 127.0.0.1 (or another loopback `host`, e.g. 127.0.0.2); `handler` decides
    each answer, `requests` records them."""

    def __init__(self, handler: Handler = echo, *, host: str = "127.0.0.1"):
        self.handler = handler
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        stub = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                recorded = RecordedRequest(self.command, parts.path, parse_qs(parts.query), dict(self.headers), body)
                with stub._lock:
                    stub.requests.append(recorded)
                response = stub.handler(recorded)
                payload = response.body if isinstance(response.body, bytes) else json.dumps(response.body).encode()
                self.send_response(response.status)
                headers = {"Content-Type": "application/json", **response.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer((host, 0), _Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HttpStub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
