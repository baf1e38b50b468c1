"""`/metrics` (SPEC §15): the Prometheus text format, parsed with prometheus_client's own parser.

Two real servers: pytest-django's live server (one process, no PROMETHEUS_MULTIPROC_DIR: the embedded
default; its counters live in this test process, so that test compares scrapes before and after) and a
gunicorn master with two workers and a multiprocess directory, one of which is killed halfway: the counts
scraped afterwards are the sums over the dead worker and the live ones.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.test import Client
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from apps.runs.models import CallbackDelivery, Run
from tests import factories
from tests.ops.conftest import closed_port
from tests.runs.conftest import _sqlite_template, actors, live_url, make_http_app, shared_db, thread_executor, wait_for  # noqa: F401  (fixtures)
from tests.runs.processes import Gunicorn
from tests.runs.test_celery_executor import celery_worker, redis_db  # noqa: F401  (fixtures)
from tests.support.http_stub import HttpStub

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def request(port: int, method: str, path: str, *, host: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        all_headers = {"Host": host, **({"Content-Type": "application/json"} if body is not None else {}), **(headers or {})}
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


def run_body(question: str = "q", **extra) -> bytes:
    return json.dumps({"input": {"question": question}, **extra}).encode()


def failing_app(project):
    """An App whose only HTTP node cannot connect (nothing listens on port 1): a failed run."""
    return make_http_app(project, "http://127.0.0.1:1/down", name="Down bot")


def unsatisfied_app(project, upstream):
    workflow = factories.make_workflow(project, "needs-a-link")
    requirement = factories.make_requirement(workflow, name="crm")
    version = factories.make_version(workflow, factories.definition(
        factories.http_node("call", ref={"requirement": str(requirement.id)}, url=f"{upstream.url}/crm")))
    return factories.make_app(project, name="Needs a link", version=version)


# ---- the embedded default: one process, no multiprocess directory ------------------------------------

def test_it_counts_runs_requests_resolutions_and_callbacks_on_a_live_server(actors, live_url, thread_executor,  # noqa: F811
                                                                            upstream):
    port = int(live_url.rsplit(":", 1)[1])
    project, key = actors["project"], actors["owner_key"]
    auth = {"Authorization": f"Bearer {key}"}
    ok, down, unlinked = make_http_app(project, f"{upstream.url}/ok"), failing_app(project), unsatisfied_app(project, upstream)

    def scrape() -> Samples:
        status, body, headers = request(port, "GET", "/metrics", host="127.0.0.1")
        assert status == 200, body
        assert headers["Content-Type"].startswith("text/plain")
        return parse(body.decode())

    before = scrape()
    for _ in range(2):
        assert request(port, "POST", "/v1/runs", host=ok.hostname, body=run_body(), headers=auth)[0] == 200
    assert request(port, "POST", f"/apps/{down.id}/v1/runs", host="127.0.0.1", body=run_body(), headers=auth)[0] == 200
    assert request(port, "POST", f"/apps/{unlinked.id}/v1/runs", host="127.0.0.1",
                   body=run_body(user_id="nobody"), headers=auth)[0] == 409
    status, body, _ = request(port, "POST", f"/apps/{ok.id}/v1/runs", host="127.0.0.1",
                              body=run_body(background=True), headers=auth)
    assert status == 202, body
    with HttpStub() as hook:
        status, body, _ = request(port, "POST", f"/apps/{ok.id}/", host="127.0.0.1", headers=auth,
                                  body=run_body(execution_mode="async", callbacks=[{"url": f"{hook.url}/hook"}]))
        assert status == 202, body
        wait_for(lambda: CallbackDelivery.objects.filter(status="delivered").exists(), message="callback delivery")
    wait_for(lambda: Run.objects.filter(mode="background", status="completed").exists(), message="background run")
    assert request(port, "GET", "/no-such-page", host="127.0.0.1")[0] == 404
    after = scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("rcp_runs_total", mode="sync", status="completed") == 2
    assert delta("rcp_runs_total", mode="sync", status="failed") == 2  # the node failure and the unsatisfied run
    assert delta("rcp_runs_total", mode="background", status="completed") == 1
    assert delta("rcp_runs_total", mode="async", status="completed") == 1
    assert delta("rcp_run_duration_seconds_count", mode="sync") == 4
    assert delta("rcp_run_duration_seconds_count", mode="background") == 1
    assert delta("rcp_run_queue_lag_seconds_count", mode="background") == 1
    assert delta("rcp_run_queue_lag_seconds_count", mode="async") == 1
    assert delta("rcp_run_queue_lag_seconds_count", mode="sync") == 0
    assert delta("rcp_node_failures_total", node_type="http", error_type="connection_error") == 1
    assert delta("rcp_credential_resolutions_total", outcome="resolved") == 5
    assert delta("rcp_credential_resolutions_total", outcome="unsatisfied") == 1
    assert delta("rcp_deliveries_total", kind="callback", outcome="delivered") == 1
    # Requests by the URL pattern, never the raw path (no App ID, no run ID in a label).
    assert delta("rcp_http_requests_total", route="app:/v1/runs", status="200") == 3
    assert delta("rcp_http_requests_total", route="app:/v1/runs", status="409") == 1
    assert delta("rcp_http_requests_total", route="app:/v1/runs", status="202") == 1
    assert delta("rcp_http_requests_total", route="app:/", status="202") == 1
    assert delta("rcp_http_requests_total", route="(unmatched)", status="404") == 1
    routes = {dict(labels)["route"] for name, labels in after if name == "rcp_http_requests_total"}
    assert not any(str(app.id) in route for route in routes for app in (ok, down, unlinked))


# ---- who may read it -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_without_a_token_only_loopback_clients_that_no_proxy_forwarded_may_read_it(settings):
    settings.METRICS_TOKEN = ""
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200
    refused = Client(REMOTE_ADDR="10.1.2.3").get("/metrics")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    # A reverse proxy on the same machine connects from loopback: what it forwards is not a local client.
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics", HTTP_FORWARDED="for=203.0.113.9").status_code == 403


@pytest.mark.django_db
def test_with_a_token_it_needs_the_bearer_token_from_anywhere(settings):
    settings.METRICS_TOKEN = token = secrets.token_urlsafe(32)
    client = Client(REMOTE_ADDR="10.1.2.3")
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": f"Basic {token}"}):
        refused = client.get("/metrics", **headers)
        assert refused.status_code == 401 and refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 401  # the token binds loopback too
    answered = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert answered.status_code == 200 and b"# TYPE rcp_runs_total counter" in answered.content
    assert answered["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_it_answers_get_and_head_only(settings):
    settings.METRICS_TOKEN = ""
    client = Client(REMOTE_ADDR="127.0.0.1")
    assert client.head("/metrics").status_code == 200
    refused = client.post("/metrics")
    assert refused.status_code == 405 and refused["Allow"] == "GET, HEAD"


@pytest.mark.django_db
def test_an_ip_literal_host_is_served_for_scrapers_that_address_the_machine(settings):
    settings.METRICS_TOKEN = ""
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics", HTTP_HOST="10.0.0.5:8000").status_code == 200


# ---- gunicorn, two workers, one multiprocess directory ----------------------------------------------

def _worker_pids(master: subprocess.Popen) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


def _runs_in_file(path: Path) -> float:
    return sum(s.value for family in MultiProcessCollector.merge([str(path)]) for s in family.samples
               if s.name == "rcp_runs_total")


@pytest.fixture
def gunicorn_two_workers(shared_db, settings, tmp_path):  # noqa: F811
    """One gunicorn master with two gthread workers, production settings, a metrics token and a
    multiprocess directory holding a stale file from an "earlier master" (which start must remove)."""
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left by an earlier master")
    token = secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "false", "DATABASE_URL": shared_db,
        "SECRET_KEY": settings.SECRET_KEY, "FERNET_KEYS": ",".join(settings.FERNET_KEYS),
        "CREDENTIALS_API_TOKEN": secrets.token_urlsafe(32), "ALLOW_PRIVATE_NETWORK_TARGETS": "true",
        "SECURE_SSL_REDIRECT": "false", "PLATFORM_URL": settings.PLATFORM_URL, "APPS_DOMAIN": settings.APPS_DOMAIN,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT), "RUNS_EXECUTOR": "thread", "PYTHONUNBUFFERED": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "METRICS_TOKEN": token,
    }
    server = Gunicorn(env, tmp_path / "gunicorn.log", workers=2).start()
    try:
        server.wait_ready(host=settings.PLATFORM_HOST)
        wait_for(lambda: len(_worker_pids(server.process)) == 2, message="two workers")
        yield server, metrics_dir, token
    finally:
        Gunicorn.stop_all([server])


@pytest.mark.slow
def test_two_gunicorn_workers_report_the_sum_of_their_counts_even_after_one_died(gunicorn_two_workers, actors,  # noqa: F811
                                                                                upstream, settings):
    server, metrics_dir, token = gunicorn_two_workers
    assert not (metrics_dir / "counter_1.db").exists()  # emptied at master start
    project, key = actors["project"], actors["owner_key"]
    auth = {"Authorization": f"Bearer {key}"}
    ok, down = make_http_app(project, f"{upstream.url}/ok"), failing_app(project)

    def sync_run(app) -> None:
        status, body, _ = request(server.port, "POST", "/v1/runs", host=app.hostname, body=run_body(), headers=auth)
        assert status == 200, body

    for _ in range(3):
        sync_run(ok)
    sync_run(down)
    status, body, _ = request(server.port, "POST", "/v1/runs", host=ok.hostname, body=run_body(background=True),
                              headers=auth)
    assert status == 202, body
    wait_for(lambda: Run.objects.filter(mode="background", status="completed").exists(), message="background run")

    # Kill a worker that executed runs; the master replaces it (child_exit marks it dead).
    served = {int(path.stem.rsplit("_", 1)[1]) for path in metrics_dir.glob("counter_*.db") if _runs_in_file(path)}
    victim = next(iter(served & _worker_pids(server.process)))
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in _worker_pids(server.process) and len(_worker_pids(server.process)) == 2,
             message="the worker replaced")
    for _ in range(2):  # executed by the survivor or the replacement: another process than the victim
        sync_run(ok)

    status, body, headers = request(server.port, "GET", "/metrics", host=settings.PLATFORM_HOST,
                                    headers={"Authorization": f"Bearer {token}"})
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain")
    samples = parse(body.decode())
    assert _runs_in_file(metrics_dir / f"counter_{victim}.db") > 0  # the dead worker's counts are still summed
    assert value(samples, "rcp_runs_total", mode="sync", status="completed") == 5
    assert value(samples, "rcp_runs_total", mode="sync", status="failed") == 1
    assert value(samples, "rcp_runs_total", mode="background", status="completed") == 1
    assert value(samples, "rcp_run_duration_seconds_count", mode="sync") == 6
    assert value(samples, "rcp_run_duration_seconds_bucket", mode="sync", le="+Inf") == 6
    assert value(samples, "rcp_run_queue_lag_seconds_count", mode="background") == 1
    assert value(samples, "rcp_node_failures_total", node_type="http", error_type="connection_error") == 1
    assert value(samples, "rcp_credential_resolutions_total", outcome="resolved") == 7
    assert value(samples, "rcp_http_requests_total", route="app:/v1/runs", status="200") == 6
    assert value(samples, "rcp_http_requests_total", route="app:/v1/runs", status="202") == 1

    # The token is required, and App hosts have no /metrics at all.
    assert request(server.port, "GET", "/metrics", host=settings.PLATFORM_HOST)[0] == 401
    assert request(server.port, "GET", "/metrics", host=settings.PLATFORM_HOST,
                   headers={"Authorization": "Bearer wrong"})[0] == 401
    for host, path in ((ok.hostname, "/metrics"), (settings.PLATFORM_HOST, f"/apps/{ok.id}/metrics")):
        status, body, _ = request(server.port, "GET", path, host=host, headers={"Authorization": f"Bearer {token}"})
        assert status == 404 and b"rcp_" not in body


# ---- a Celery worker's own /metrics -----------------------------------------------------------------

@pytest.mark.redis
@pytest.mark.slow
def test_a_celery_worker_serves_the_counts_of_its_pool_processes(api_client, actors, celery_worker, upstream,  # noqa: F811
                                                                  tmp_path):
    port = closed_port()
    metrics_dir = tmp_path / "worker-prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left by an earlier worker")
    celery_worker.env.update({"WORKER_METRICS_BIND": f"127.0.0.1:{port}", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    celery_worker.start()
    assert not (metrics_dir / "counter_1.db").exists()
    app = make_http_app(actors["project"], f"{upstream.url}/celery")
    for question in ("q1", "q2"):
        response = api_client.post(f"/apps/{app.id}/v1/runs", {"input": {"question": question}, "background": True},
                                   format="json", HTTP_AUTHORIZATION=f"Bearer {actors['owner_key']}")
        assert response.status_code == 202, response.content
    wait_for(lambda: Run.objects.filter(status="completed").count() == 2, timeout=30, message="two background runs")

    status, body, headers = request(port, "GET", "/metrics", host=f"127.0.0.1:{port}")
    assert status == 200, body
    samples = parse(body.decode())
    assert value(samples, "rcp_runs_total", mode="background", status="completed") == 2
    assert value(samples, "rcp_run_queue_lag_seconds_count", mode="background") == 2
    assert value(samples, "rcp_credential_resolutions_total", outcome="resolved") == 2
    assert request(port, "GET", "/metrics", host="x", headers={"X-Forwarded-For": "203.0.113.9"})[0] == 403
    assert request(port, "GET", "/other", host="x")[0] == 404


def test_a_worker_metrics_address_without_a_multiprocess_directory_is_refused():
    # The pool's processes would count in memories nobody reads: refuse rather than serve zeros.
    from django.core.exceptions import ImproperlyConfigured

    from apps.core import metrics
    from apps.core.metrics_http import serve_worker_metrics

    assert metrics.MULTIPROCESS_DIR == ""
    with pytest.raises(ImproperlyConfigured, match="PROMETHEUS_MULTIPROC_DIR"):
        serve_worker_metrics("127.0.0.1:0")
