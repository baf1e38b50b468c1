"""A loopback upstream that answers after DELAY seconds (for streams held open by a slow node).
Checks `Authorization: Bearer KEY` like ../shared/bench/upstream.py. Usage: slow_upstream.py PORT KEY DELAY"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, KEY, DELAY = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
BODY = json.dumps({"ok": True, "source": "slow-upstream"}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        good = self.headers.get("Authorization") == "Bearer " + KEY
        if good and self.path != "/__stats":
            time.sleep(DELAY)
        body = BODY if good or self.path == "/__stats" else b'{"error":"unauthorized"}'
        self.send_response(200 if good or self.path == "/__stats" else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


Server(("127.0.0.1", PORT), Handler).serve_forever()
