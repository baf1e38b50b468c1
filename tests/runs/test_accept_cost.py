"""What accepting a background run costs the web process (SPEC.md section 11: accepting costs less than a sync
run): the statements of the accept path, and the thread executor's pool threads, which execute runs beside
the requests, keeping their database connection while work is queued instead of opening one per run."""

import threading

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from apps.runs import dispatch
from tests.runs.conftest import make_http_app

# Statements of `POST /v1/runs {"background": true}` (without BEGIN/COMMIT or savepoints): the App lookup,
# the access key, the run and its `run.created` event.
MAX_QUERIES_PER_ACCEPT = 4


def _statements(captured) -> list[str]:
    skip = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK")
    return [q["sql"] for q in captured.captured_queries if not q["sql"].upper().startswith(skip)]


@pytest.mark.django_db
def test_accepting_a_background_run_stays_within_its_statement_budget(client, project, owner_key, upstream):
    app = make_http_app(project, f"{upstream.url}/accept")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {owner_key}"}
    body = {"input": {"question": "q"}, "background": True}
    client.post(f"/apps/{app.id}/v1/runs", body, content_type="application/json", **auth)  # warm: last_used_at
    with CaptureQueriesContext(connection) as captured:
        response = client.post(f"/apps/{app.id}/v1/runs", body, content_type="application/json", **auth)
    assert response.status_code == 202, response.content
    statements = _statements(captured)
    assert len(statements) <= MAX_QUERIES_PER_ACCEPT, statements
    # No Idempotency-Key: no lookup of an earlier run.
    assert not [s for s in statements if s.startswith("SELECT") and '"runs_run"' in s], statements
    print(f"\nstatements per accepted background run: {len(statements)}")


def test_pool_threads_keep_their_connection_while_work_is_queued_and_close_it_when_idle(transactional_db):
    executor = dispatch.ThreadExecutor(workers=1)
    release = threading.Event()
    seen: list[tuple[object, object]] = []  # (the thread's connection wrapper, its DB-API connection)

    def record(arg: str) -> str:
        if arg == "first":
            release.wait(timeout=10)  # the next jobs queue up behind this one
        wrapper = connections["default"]  # this thread's own (the `connection` proxy resolves per thread)
        wrapper.ensure_connection()
        seen.append((wrapper, wrapper.connection))
        return arg

    job = dispatch.Job(name="tests.record", function=record)
    try:
        for arg in ("first", "second", "third"):
            executor.submit(job, arg)
        release.set()
    finally:
        executor.shutdown(wait=True)
    assert len(seen) == 3
    # Back to back, the three jobs ran on one connection of the pool thread...
    assert len({id(raw) for _, raw in seen}) == 1
    # ...which the thread closed when it found nothing more to do.
    assert seen[-1][0].connection is None
