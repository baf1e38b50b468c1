"""Rate limits (SPEC §15): 429 `rate_limited` + Retry-After once a caller is over its scope's limit; counted per
access key, per connect token, per client address without a key; runs, connect and management writes; reads
never. Limits are set per test, with day-long windows, so no window ends during a test.

The cache is the product's embedded default (SQLiteCache, in a file of this session: tests/settings.py); the
Redis case runs the same limits on Django's RedisCache under a key prefix of its own."""

from __future__ import annotations

import logging
import uuid

import pytest
from django.test import Client
from jsonschema import Draft202012Validator

from apps.core.ratelimit import client_ip
from apps.deployments.models import App
from tests import factories
from tests.connect.conftest import bearer, build_connect_setup, connect_token
from tests.support.redis_keys import REDIS_URL, owned_prefix

pytestmark = pytest.mark.django_db

DAY = 86400


@pytest.fixture
def limits(settings):
    """Set some scopes' limits (count per day); the other scopes keep theirs."""
    def apply(**counts: int):
        settings.RATE_LIMITS = {**settings.RATE_LIMITS, **{scope: (count, DAY) for scope, count in counts.items()}}
    return apply


def echo_app(project, *, name="Echo", access_type=App.AccessType.PRIVATE):
    """An App whose run answers its input: no upstream, a run costs nothing but the platform's own path."""
    workflow = factories.make_workflow(project, name.lower())
    version = factories.make_version(workflow, factories.definition(output={"echo": "{{ nodes.input.output.question }}"}))
    return factories.make_app(project, name=name, version=version, access_type=access_type)


def run(client, app, key=None, *, path="/v1/runs", **extra):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return client.post(f"/apps/{app.id}{path}", {"input": {"question": "q"}}, content_type="application/json",
                       **auth, **extra)


def assert_rate_limited(response, *, scope: str, limit: int):
    assert response.status_code == 429, response.content
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= DAY
    assert response.json() == {"error": {
        "code": "rate_limited", "message": response.json()["error"]["message"],
        "details": {"scope": scope, "limit": limit, "period_seconds": DAY, "retry_after": retry_after},
    }}


class TestRuns:
    def test_over_the_limit_a_key_gets_429_with_retry_after_and_the_envelope(self, client, project, owner_key, limits):
        limits(runs=3)
        app = echo_app(project)
        assert [run(client, app, owner_key).status_code for _ in range(2)] == [200, 200]
        assert run(client, app, owner_key, path="/").status_code == 200  # invoke counts on the same limit
        assert_rate_limited(run(client, app, owner_key), scope="runs", limit=3)
        assert_rate_limited(run(client, app, owner_key, path="/"), scope="runs", limit=3)

    def test_one_key_over_its_limit_does_not_limit_another(self, client, project, owner_key, org_key, limits):
        limits(runs=2)
        app = echo_app(project)
        assert [run(client, app, owner_key).status_code for _ in range(3)] == [200, 200, 429]
        assert [run(client, app, org_key).status_code for _ in range(2)] == [200, 200]
        assert run(client, app, owner_key).status_code == 429

    def test_the_limit_is_the_keys_on_every_app(self, client, project, owner_key, limits):
        limits(runs=2)
        first, second = echo_app(project, name="First"), echo_app(project, name="Second")
        assert [run(client, first, owner_key).status_code, run(client, second, owner_key).status_code] == [200, 200]
        assert run(client, first, owner_key).status_code == 429

    def test_reads_are_not_limited(self, client, project, owner_key, limits):
        limits(runs=1)
        app = echo_app(project)
        run_id = run(client, app, owner_key).json()["id"]
        assert run(client, app, owner_key).status_code == 429
        auth = {"HTTP_AUTHORIZATION": f"Bearer {owner_key}"}
        assert client.get(f"/apps/{app.id}/v1/runs", **auth).status_code == 200
        assert client.get(f"/apps/{app.id}/v1/runs/{run_id}", **auth).status_code == 200

    def test_off_means_no_limit(self, client, project, owner_key, settings):
        settings.RATE_LIMITS = {**settings.RATE_LIMITS, "runs": None}
        app = echo_app(project)
        assert {run(client, app, owner_key).status_code for _ in range(5)} == {200}


class TestAnonymousClients:
    """Public Apps answer without a key: such runs count per client address, under `anonymous`."""

    def test_each_address_has_its_own_counter(self, client, project, limits):
        limits(anonymous=2)
        app = echo_app(project, access_type=App.AccessType.PUBLIC)
        alice, bob = {"REMOTE_ADDR": "198.51.100.7"}, {"REMOTE_ADDR": "203.0.113.9"}
        assert [run(client, app, **alice).status_code for _ in range(2)] == [200, 200]
        assert_rate_limited(run(client, app, **alice), scope="anonymous", limit=2)
        assert [run(client, app, **bob).status_code for _ in range(2)] == [200, 200]
        assert run(client, app, **bob).status_code == 429

    def test_a_key_is_not_limited_by_its_address(self, client, project, owner_key, limits):
        limits(anonymous=1, runs=5)
        app = echo_app(project, access_type=App.AccessType.PUBLIC)
        assert [run(client, app).status_code, run(client, app).status_code] == [200, 429]
        assert run(client, app, owner_key).status_code == 200

    def test_x_forwarded_for_is_ignored_without_trusted_proxies(self, client, project, limits, settings):
        settings.RATE_LIMIT_TRUSTED_PROXIES = 0
        limits(anonymous=1)
        app = echo_app(project, access_type=App.AccessType.PUBLIC)
        assert run(client, app, REMOTE_ADDR="198.51.100.7").status_code == 200
        spoofed = run(client, app, REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="192.0.2.1")
        assert spoofed.status_code == 429

    def test_behind_a_trusted_proxy_the_address_it_appended_counts(self, client, project, limits, settings):
        settings.RATE_LIMIT_TRUSTED_PROXIES = 1
        limits(anonymous=1)
        app = echo_app(project, access_type=App.AccessType.PUBLIC)
        proxy = {"REMOTE_ADDR": "10.0.0.2"}
        assert run(client, app, HTTP_X_FORWARDED_FOR="198.51.100.7", **proxy).status_code == 200
        assert run(client, app, HTTP_X_FORWARDED_FOR="203.0.113.9", **proxy).status_code == 200
        # What the client wrote left of the proxy's entry is not read: still 198.51.100.7's second run.
        assert run(client, app, HTTP_X_FORWARDED_FOR="192.0.2.1, 198.51.100.7", **proxy).status_code == 429


class TestClientAddress:
    class Request:
        def __init__(self, remote, forwarded=None):
            self.META = {"REMOTE_ADDR": remote, **({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {})}

    def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4(self, settings):
        settings.RATE_LIMIT_TRUSTED_PROXIES = 0
        assert client_ip(self.Request("2001:db8:1:2:aaaa::1")) == client_ip(self.Request("2001:db8:1:2:bbbb::9"))
        assert client_ip(self.Request("2001:db8:1:2:aaaa::1")) != client_ip(self.Request("2001:db8:1:3::1"))
        assert client_ip(self.Request("::ffff:198.51.100.7")) == "198.51.100.7"

    def test_two_trusted_proxies_read_the_second_entry_from_the_right(self, settings):
        settings.RATE_LIMIT_TRUSTED_PROXIES = 2
        assert client_ip(self.Request("10.0.0.3", "192.0.2.1, 198.51.100.7, 10.0.0.2")) == "198.51.100.7"
        # Fewer entries than trusted proxies: the request did not come through them; the peer counts.
        assert client_ip(self.Request("10.0.0.3", "198.51.100.7")) == "10.0.0.3"
        assert client_ip(self.Request("10.0.0.3", "not-an-address, 10.0.0.2")) == "not-an-address"


class TestConnect:
    def test_minting_tokens_is_limited_per_key(self, client, project, owner_key, org_key, limits):
        limits(connect_tokens=2)
        app = echo_app(project)

        def mint(key):
            return client.post(f"/apps/{app.id}/v1/connect/tokens", {"user_id": "user-42"},
                               content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")

        assert [mint(owner_key).status_code for _ in range(2)] == [201, 201]
        assert_rate_limited(mint(owner_key), scope="connect_tokens", limit=2)
        assert mint(org_key).status_code == 201

    def test_connect_api_writes_are_limited_per_token(self, client, project, limits):
        limits(connect=2)
        setup = build_connect_setup(project)
        first, second = connect_token(setup.app, "user-42"), connect_token(setup.app, "user-42")
        path = f"/v1/connect/requirements/{setup.billing.id}/connection"
        assert [client.delete(path, **bearer(first)).status_code for _ in range(2)] == [404, 404]  # nothing linked
        assert_rate_limited(client.delete(path, **bearer(first)), scope="connect", limit=2)
        assert client.post(f"/v1/connect/requirements/{setup.billing.id}/credentials", {},
                           content_type="application/json", **bearer(first)).status_code == 429
        assert client.get("/v1/connect/requirements", **bearer(first)).status_code == 200  # a read
        assert client.delete(path, **bearer(second)).status_code == 404  # another token: its own counter

    def test_the_hosted_page_counts_its_exchange_and_forms_on_the_token(self, project, limits):
        limits(connect=2)
        setup = build_connect_setup(project)
        browser = Client()
        assert browser.get("/connect", {"token": connect_token(setup.app, "user-42")}).status_code == 302
        unlink = f"/connect/requirements/{setup.billing.id}/unlink"
        assert browser.post(unlink).status_code == 302
        refused = browser.post(unlink)
        assert refused.status_code == 429
        assert 1 <= int(refused["Retry-After"]) <= DAY
        assert "Too many attempts" in refused.content.decode()
        assert refused["Content-Security-Policy"].startswith("default-src 'none'")  # still the page's headers
        other = Client()  # another token, another counter
        assert other.get("/connect", {"token": connect_token(setup.app, "user-43")}).status_code == 302


class TestManagementWrites:
    def test_writes_are_limited_per_key_and_reads_are_not(self, client, project, owner_key, org_key, limits):
        limits(management_writes=2)

        def create(key, name):
            return client.post("/v1/workflows", {"name": name, "project_id": str(project.id)},
                               content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")

        assert [create(owner_key, "a").status_code, create(owner_key, "b").status_code] == [201, 201]
        assert_rate_limited(create(owner_key, "c"), scope="management_writes", limit=2)
        assert client.patch(f"/v1/apps/{uuid.uuid4()}", {}, content_type="application/json",
                            HTTP_AUTHORIZATION=f"Bearer {owner_key}").status_code == 429
        assert client.get("/v1/workflows", HTTP_AUTHORIZATION=f"Bearer {owner_key}").status_code == 200
        assert create(org_key, "d").status_code == 201


class TestOnRedis:
    """The same limits on Django's RedisCache (the production setting), under this test's own key prefix;
    the keys it made are deleted afterwards (never a flush: the Redis is shared)."""

    @pytest.fixture
    def redis_cache(self, settings):
        with owned_prefix() as (client, prefix):
            settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                           "LOCATION": REDIS_URL, "KEY_PREFIX": prefix}}
            yield client, prefix

    def test_runs_are_limited_and_each_counter_expires_with_its_window(self, client, project, owner_key, org_key,
                                                                       limits, redis_cache):
        redis_client, prefix = redis_cache
        limits(runs=2)
        app = echo_app(project)
        assert [run(client, app, owner_key).status_code for _ in range(3)] == [200, 200, 429]
        assert run(client, app, org_key).status_code == 200
        keys = list(redis_client.scan_iter(match=f"{prefix}:*"))
        assert len(keys) == 2  # one counter per key
        assert all(0 < redis_client.ttl(key) <= DAY + 1 for key in keys)


class TestCacheUnreachable:
    def test_requests_pass_and_one_warning_is_logged(self, client, project, owner_key, limits, settings, caplog):
        from apps.core import ratelimit

        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                       "LOCATION": "redis://127.0.0.1:1/0"}}  # nothing listens on port 1
        ratelimit._last_cache_failure_log = 0.0
        limits(runs=1)
        app = echo_app(project)
        with caplog.at_level(logging.WARNING, logger="apps.core.ratelimit"):
            assert {run(client, app, owner_key).status_code for _ in range(3)} == {200}
        assert [r.getMessage() for r in caplog.records if r.name == "apps.core.ratelimit"] == [
            "rate limits not applied: the cache cannot be reached"]


@pytest.fixture(scope="module")
def document():
    from apps.management_api.schema import PlatformSchemaGenerator

    return PlatformSchemaGenerator().get_schema(request=None, public=True)


class TestDocumentation:
    def test_the_openapi_document_gives_the_429_to_exactly_the_limited_operations(self, document):
        limited = {}
        for path, item in document["paths"].items():
            for method, operation in item.items():
                if isinstance(operation, dict) and "responses" in operation:
                    if method != "get" and (path.startswith(("/v1/connect/requirements", "/v1/connections", "/v1/apps",
                                                             "/v1/workflows", "/v1/oauth2"))
                                            or path in ("/", "/v1/runs", "/v1/connect/tokens")):
                        assert "429" in operation["responses"], f"{method} {path}"
                    limited[f"{method.upper()} {path}"] = operation["responses"].get("429")
        documented = {name for name, response in limited.items() if response}
        assert {"POST /", "POST /v1/runs", "POST /v1/connect/tokens", "POST /v1/workflows",
                "DELETE /v1/connect/requirements/{requirement_id}/connection"} <= documented
        # Reads are not limited, except the proxy's: every proxied call, whatever its method, is (SPEC §14/§15).
        proxy = {f"{m} /v1/proxy/{{requirement_name}}/{{path}}" for m in ("GET", "POST", "PUT", "PATCH", "DELETE")}
        assert proxy <= documented
        assert not {name for name in documented if name.startswith("GET ") and not name.startswith("GET /v1/proxy/")}
        assert "POST /v1/runs/{run_id}/cancel" not in documented and "POST /v1/files" not in documented
        response = limited["POST /v1/runs"]
        assert response["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
        assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}

    def test_a_429_answer_is_the_documented_one(self, client, project, owner_key, limits, document):
        limits(management_writes=1)
        auth = {"HTTP_AUTHORIZATION": f"Bearer {owner_key}"}
        for _ in range(2):
            response = client.post("/v1/workflows", {"name": "w", "project_id": str(project.id)},
                                   content_type="application/json", **auth)
        assert response.status_code == 429
        documented = document["paths"]["/v1/workflows"]["post"]["responses"]["429"]
        root = {"components": document["components"], **documented["content"]["application/json"]["schema"]}
        assert list(Draft202012Validator(root).iter_errors(response.json())) == []
        assert list(Draft202012Validator(documented["headers"]["Retry-After"]["schema"]).iter_errors(
            int(response["Retry-After"]))) == []


class TestSettings:
    def test_rates_are_read_from_the_environment_and_a_bad_one_fails_loudly(self, monkeypatch):
        from django.core.exceptions import ImproperlyConfigured

        from config.settings import _rate

        for text, expected in [("600/minute", (600, 60)), ("5/s", (5, 1)), ("100/hour", (100, 3600)),
                               ("1/day", (1, 86400)), ("off", None)]:
            monkeypatch.setenv("RATE_LIMIT_X", text)
            assert _rate("RATE_LIMIT_X", "1/minute") == expected
        for bad in ("600", "0/minute", "ten/minute", "5/fortnight", "-1/s"):
            monkeypatch.setenv("RATE_LIMIT_X", bad)
            with pytest.raises(ImproperlyConfigured, match="RATE_LIMIT_X"):
                _rate("RATE_LIMIT_X", "1/minute")
