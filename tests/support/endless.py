"""A loopback server whose POST answer is 256 MB long: a client that reads answers whole would fill its memory.
Tests assert the platform hung up long before the end (`written["bytes"] < TOTAL`), whatever the timing."""

from __future__ import annotations

import http.server
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

TOTAL = 256 * 1024 * 1024


@contextmanager
def endless_answer(*, content_type: str = "application/octet-stream", fill: bytes = b"x") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields (base URL, written): `written["bytes"]` counts what the server managed to send, and
    `written["done"]` is set once it stopped (the client hung up, or all was sent)."""
    written: dict[str, Any] = {"bytes": 0, "done": threading.Event()}

    class Endless(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(TOTAL))
            self.end_headers()
            chunk = fill * (1024 * 1024)
            try:
                while written["bytes"] < TOTAL:
                    self.wfile.write(chunk)
                    written["bytes"] += len(chunk)
            except OSError:
                pass  # the client hung up
            finally:
                written["done"].set()

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Endless)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", written
    finally:
        server.shutdown()
        server.server_close()
