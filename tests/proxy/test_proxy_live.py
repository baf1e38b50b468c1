"""The proxy under gunicorn (./gunicorn.conf.py, gthread), with raw HTTP requests: the server decodes the path as
production does. A thief on 127.0.0.2 proves no path trick leaves the connection's origin; a 50 MB answer
streams with the worker's peak memory flat."""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from apps.proxy.models import ProxyCall
from tests import factories
from tests.proxy.conftest import SHARED_KEY, Upstream, build_world
from tests.runs.conftest import _sqlite_template, shared_db  # noqa: F401 (fixtures)
from tests.runs.processes import Gunicorn, production_env
from tests.support.http_stub import HttpStub

pytestmark = [pytest.mark.slow]


@pytest.fixture
def served(shared_db, settings, tmp_path):  # noqa: F811
    """A gunicorn master (one gthread worker) on the shared database; the caller seeds before `start()`."""
    env = production_env(settings, shared_db, drop_prefixes=("DJANGO_", "DATABASE_", "RUNS_", "LOG_"),
                         RUNS_RECOVER_ON_START="false", RATE_LIMIT_PROXY="off")
    servers: list[Gunicorn] = []

    def start() -> Gunicorn:
        server = Gunicorn(env, tmp_path / "gunicorn.log").start()
        servers.append(server)
        return server.wait_ready(host=settings.PLATFORM_HOST)

    yield start
    Gunicorn.stop_all(servers)


def raw_get(server: Gunicorn, host: str, path: str, key: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)  # the path goes as written
        connection.putheader("Host", host)
        connection.putheader("Authorization", f"Bearer {key}")
        connection.endheaders()
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def trick_paths(thief: str) -> list[str]:
    return [
        f"../../../{thief}/x", f"..%2f..%2f..%2f{thief}/x", f"%2e%2e/%2e%2e/{thief}/x", f"%2E%2E%2F%2E%2E%2F{thief}",
        f".%2e/.%2e/{thief}", f"x/../../../{thief}", f"x/%2e%2e/%2e%2e/{thief}", f"%252e%252e/%252e%252e/{thief}",
        f"/{thief}/x", f"//{thief}/x", f"%2f%2f{thief}/x", f"http://{thief}/x", f"http:%2f%2f{thief}/x",
        f"https:/{thief}/x", f"@{thief}/x", f"%40{thief}/x", f"x@{thief}", f"\\\\{thief}/x", f"%5c%5c{thief}/x",
        f"..\\..\\{thief}", f"%5c..%5c..%5c{thief}", f"x%00/{thief}", f"x%0d%0aHost:%20{thief}/x", f"x%20/{thief}",
        f"?url=http://{thief}/x", f"x?next=//{thief}", f"%3f/../{thief}", f"x%23/../../{thief}",
    ]


def test_no_path_trick_leaves_the_fixed_origin_and_base_path(served, settings, thief):
    upstream = Upstream()
    with HttpStub(upstream) as stub:
        project = factories.make_project("Acme", "Proxy")
        world = build_world(project, factories.make_key(project, name="owner"), stub, upstream)
        server = served()
        target = thief.url.removeprefix("http://")
        statuses = {}
        for trick in trick_paths(target):
            for prefix in ("/v1/proxy/billing/", f"/v1/proxy/connections/{world.shared.id}/"):
                sep = "&" if "?" in trick else "?"
                path = f"/apps/{world.app.id}{prefix}{trick}{sep}user_id=user-42"
                statuses[path] = raw_get(server, settings.PLATFORM_HOST, path, world.key)
        on_host = raw_get(server, world.app.hostname, f"/v1/proxy/billing/%2e%2e/{target}?user_id=user-42", world.key)

    assert thief.requests == [], [r.path for r in thief.requests]
    assert set(statuses.values()) <= {200, 400, 404}, statuses
    assert on_host == 400
    seen = [r.path for r in stub.requests]
    assert seen and all(p in ("/base", "/shared") or p.startswith(("/base/", "/shared/")) for p in seen), seen
    assert not any(".." in p or "//" in p or "\\" in p for p in seen), seen
    refused = [p for p, status in statuses.items() if status == 400]
    assert len(refused) >= 40, statuses  # most tricks are refused outright; the rest stayed under the base path


class _BigUpstream:
    """Streams `size` bytes (chunked, 64 KiB writes), then the shared key split across two writes."""

    def __init__(self, size: int):
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_\n"
        chunk = line * (65536 // len(line))
        tail = f"end {SHARED_KEY} end\n".encode()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _write(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                sent = 0
                try:
                    while sent < size:
                        piece = chunk[: size - sent]
                        self._write(piece)
                        sent += len(piece)
                    self.wfile.flush()
                    self._write(tail[:10])
                    self.wfile.flush()
                    time.sleep(0.05)
                    self._write(tail[10:])
                    self._write(b"")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.tail = tail

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def _stream(server: Gunicorn, host: str, path: str, key: str) -> tuple[int, int, bytes]:
    """GET `path`, reading the body 1 MiB at a time; (status, bytes, the last 200 bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request("GET", path, headers={"Host": host, "Authorization": f"Bearer {key}"})
        response = connection.getresponse()
        total, last = 0, b""
        while chunk := response.read(1 << 20):
            total += len(chunk)
            last = (last + chunk)[-200:]
        return response.status, total, last
    finally:
        connection.close()


def test_a_50_mb_answer_streams_with_flat_worker_memory(served, settings, capsys):
    size = 50 * 1024 * 1024
    big = _BigUpstream(size)
    try:
        project = factories.make_project("Acme", "Big")
        key = factories.make_key(project, name="owner")
        connection = factories.make_connection(project, name="big", config={"url": big.url, "api_key": SHARED_KEY})
        workflow = factories.make_workflow(project, "wf-big")
        version = factories.make_version(workflow, factories.definition(
            factories.http_node("call", ref={"id": str(connection.id)}, url=f"{big.url}/call")))
        app = factories.make_app(project, name="Big", version=version)
        server = served()
        path = f"/apps/{app.id}/v1/proxy/connections/{connection.id}/dump"
        worker = _worker_pid(server.process.pid)
        _stream(server, settings.PLATFORM_HOST, path.replace("/dump", "/warm-up"), key)  # imports, pools, regexes
        before = _status_kb(worker, "VmRSS")
        Path(f"/proc/{worker}/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to the current RSS
        status, total, last = _stream(server, settings.PLATFORM_HOST, path, key)
        peak = _status_kb(worker, "VmHWM")
    finally:
        big.close()

    growth_mb = (peak - before) / 1024
    with capsys.disabled():
        print(f"\n50 MB proxied answer: worker RSS before {before / 1024:.1f} MB, peak during {peak / 1024:.1f} MB, "
              f"growth {growth_mb:.1f} MB")
    assert status == 200
    assert total == size + len(big.tail) - len(SHARED_KEY) + len("********")
    assert last.endswith(b"end ******** end\n") and SHARED_KEY.encode() not in last
    assert growth_mb < 20, growth_mb  # the body is 50 MB: buffering any large part of it would show here
    row = ProxyCall.objects.filter(connection_id=connection.id, path="dump").get()
    assert (row.status, row.outcome, row.bytes_sent) == (200, "completed", total)

