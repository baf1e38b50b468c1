"""A proxied world: an App whose deployed version uses a shared http_api_key connection, an http_api_key
requirement (`billing`) and an OAuth2 requirement (`crm`), all pointing at one loopback upstream under base
paths (`/base`, `/crm`, `/shared`), and a loopback token endpoint (`/token`) on the same server."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import pytest

from apps.connections.models import Connection
from apps.deployments.models import App
from tests import factories
from tests.connect.conftest import ConnectSetup, build_connect_setup
from tests.support.http_stub import HttpStub, RecordedRequest, StubResponse, echo

USER_42_KEY = factories.CANARIES["user42_api_key"]
USER_43_KEY = factories.CANARIES["user43_api_key"]
SHARED_KEY = factories.CANARIES["shared_api_key"]
OLD_ACCESS = factories.CANARIES["access_token"]
OLD_REFRESH = factories.CANARIES["refresh_token"]


@dataclass
class Upstream:
    """Routes: `/token` the OAuth2 token endpoint (counts calls); `/crm/...` 401 unless the token is a fresh one;
    `routes[path]` a custom answer; anything else echoes."""

    token_calls: int = 0
    token_forms: list = field(default_factory=list)
    routes: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: RecordedRequest) -> StubResponse:
        if request.path == "/token":
            with self.lock:
                self.token_calls += 1
                n = self.token_calls
            time.sleep(0.02)
            self.token_forms.append({k: v[0] for k, v in parse_qs(request.body.decode()).items()})
            return StubResponse(200, {"access_token": f"fresh-access-{n}", "token_type": "Bearer", "expires_in": 3600,
                                      "refresh_token": f"fresh-refresh-{n}"})
        if request.path in self.routes:
            return self.routes[request.path](request)
        if request.path.startswith("/crm/") and not request.headers.get("Authorization", "").startswith("Bearer fresh-"):
            return StubResponse(401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return echo(request)


@dataclass
class World:
    setup: ConnectSetup
    app: App
    key: str
    upstream: Upstream
    stub: HttpStub
    shared: Connection

    def path(self, rest: str) -> str:
        return f"/apps/{self.app.id}{rest}"


def oauth_link(setup: ConnectSetup, user_id: str) -> Connection:
    config = {"provider_id": str(setup.provider.id), "scopes": ["read"], "access_token": OLD_ACCESS,
              "refresh_token": OLD_REFRESH, "expires_at": int(time.time()) + 3600, "token_type": "Bearer"}
    link = factories.link_end_user(setup.app, setup.crm, user_id, config)
    Connection.objects.filter(pk=link.connection_id).update(provider=setup.provider)
    return Connection.objects.get(pk=link.connection_id)


def build_world(project, key: str, stub: HttpStub, upstream: Upstream) -> World:
    setup = build_connect_setup(project, token_url=f"{stub.url}/token", billing_url=f"{stub.url}/base",
                                crm_url=f"{stub.url}/crm")
    shared = factories.make_connection(project, name="proxy-shared",
                                       config={"url": f"{stub.url}/shared", "api_key": SHARED_KEY, "header": "X-Api-Key",
                                               "prefix": ""})
    # Redeploy with a third node that references the shared connection by ID.
    version = setup.app.current_deployment.workflow_version
    definition = version.definition
    nodes = [n for n in definition["nodes"] if n["id"] != "output"]
    nodes.append(factories.http_node("shared", ref={"id": str(shared.id)}, url=f"{stub.url}/shared/x",
                                     depends_on=("contacts",)))
    new_version = factories.make_version(version.workflow, {"nodes": [
        *nodes, {"id": "output", "type": "output", "depends_on": ["shared"], "fields": {"r": "{{ nodes.shared.output.body }}"}},
    ]})
    from apps.deployments.services import deploy

    deploy(app=setup.app, version=new_version, actor="test")
    factories.link_end_user(setup.app, setup.billing, "user-42", {"url": f"{stub.url}/base", "api_key": USER_42_KEY})
    factories.link_end_user(setup.app, setup.billing, "user-43", {"url": f"{stub.url}/base", "api_key": USER_43_KEY})
    setup.app.refresh_from_db()
    return World(setup=setup, app=setup.app, key=key, upstream=upstream, stub=stub, shared=shared)


@pytest.fixture
def world(project, owner_key):
    upstream = Upstream()
    with HttpStub(upstream) as stub:
        yield build_world(project, owner_key, stub, upstream)


@pytest.fixture
def thief():
    """A server on another loopback address that records every request: nothing may ever reach it."""
    with HttpStub(echo, host="127.0.0.2") as server:
        yield server
