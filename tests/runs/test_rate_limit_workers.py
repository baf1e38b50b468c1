"""Rate limits are shared by every worker (SPEC §15): two real gunicorn masters with one worker each (A and B,
as in test_worker_staleness.py: each on its own port, so which worker answers is a fact of the test), on the
test's database and one cache: the embedded default (SQLiteCache, one file) or Redis (Django's RedisCache,
this test's own key prefix, its keys deleted afterwards). A key's runs alternate A, B, A, B...: the limit is
reached after exactly `LIMIT` runs in all, not `LIMIT` per worker."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from apps.deployments.models import App
from tests import factories
from tests.runs.processes import Gunicorn, production_env
from tests.support.redis_keys import REDIS_URL, owned_prefix

pytestmark = pytest.mark.slow

LIMIT = 3


@pytest.fixture(params=["sqlite", "redis"])
def cache_env(request, tmp_path):
    if request.param == "sqlite":
        yield {"CACHE_SQLITE_PATH": str(tmp_path / "cache.sqlite3")}
        return
    with owned_prefix() as (_, prefix):
        yield {"CACHE_URL": REDIS_URL, "CACHE_KEY_PREFIX": prefix}


@pytest.fixture
def workers(shared_db, settings, tmp_path, cache_env):
    env = production_env(
        settings, shared_db, drop_prefixes=("CACHE_", "RATE_LIMIT_"),
        # A day-long window: none ends during the test.
        RATE_LIMIT_RUNS=f"{LIMIT}/day", RATE_LIMIT_ANONYMOUS=f"{LIMIT}/day", **cache_env,
    )
    servers = [Gunicorn(env, tmp_path / f"gunicorn-{name}.log", name=f"worker {name}") for name in "AB"]
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready(host=settings.PLATFORM_HOST)
        yield servers
    finally:
        Gunicorn.stop_all(servers)


def _echo_app(project, name: str, access_type=App.AccessType.PRIVATE) -> App:
    workflow = factories.make_workflow(project, name.lower())
    version = factories.make_version(workflow, factories.definition(output={"echo": "{{ nodes.input.output.question }}"}))
    return factories.make_app(project, name=name, version=version, access_type=access_type)


def _run(server: Gunicorn, app: App, key: str | None = None) -> tuple[int, object]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return server.request("POST", "/v1/runs", host=f"{app.id}.{django_settings.APPS_DOMAIN}",
                          body={"input": {"question": "q"}}, headers=headers)


def test_a_keys_limit_is_shared_by_the_workers(workers, project, owner_key, org_key):
    a, b = workers
    app = _echo_app(project, "Shared")
    statuses = [_run(server, app, owner_key)[0] for server in (a, b, a, b, a)]
    assert statuses == [200] * LIMIT + [429] * (5 - LIMIT), (statuses, a.log_tail(), b.log_tail())
    status, body = _run(b, app, owner_key)
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert [_run(server, app, org_key)[0] for server in (b, a)] == [200, 200]  # another key: its own counter


def test_an_anonymous_clients_limit_is_shared_by_the_workers(workers, project):
    a, b = workers
    app = _echo_app(project, "Public", access_type=App.AccessType.PUBLIC)
    statuses = [_run(server, app)[0] for server in (b, a, b, a)]
    assert statuses == [200] * LIMIT + [429], (statuses, a.log_tail(), b.log_tail())
