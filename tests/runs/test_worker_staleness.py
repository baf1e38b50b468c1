"""Correctness first (SPEC §11): whatever a web worker caches, a change takes effect on the very next
request, on every worker.

Two real gunicorn workers (A and B) serve the platform on the test's database. Each test warms both
(several runs through each App lookup path, so any per-process cache is populated), makes ONE change
the way production makes it (a service, or the admin action for access keys) from this process, then
sends A, B, A, B: the first pair on the App's hostname, the second through `/apps/<id>/` on the
platform host (two lookup paths, two chances to be stale). Every one of those answers must show the
change. No timing: a worker that caches without invalidation fails here however fast it is.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from apps.connect.selectors import end_user_link
from apps.connect.services import end_user_connection_save, end_user_unlink
from apps.connections.models import Connection
from apps.connections.services import connection_set_status, connection_update_config
from apps.deployments.models import App
from apps.deployments.services import app_update, deploy, rollback
from apps.workflows.models import Requirement, Workflow, WorkflowVersion
from tests import factories
from tests.runs.processes import Gunicorn, production_env
from tests.support.admin import changelist_action
from tests.support.http_stub import HttpStub, RecordedRequest, StubResponse

pytestmark = pytest.mark.slow

WARM_ROUNDS = 3  # runs per worker and lookup path before the change


# ---- the servers ---------------------------------------------------------------------------------

@pytest.fixture
def workers(shared_db, settings, tmp_path):
    """Two gunicorn masters with one sync worker each, on the test's database: [A, B].

    Why two masters rather than one with `-w 2`: behind one listening socket the kernel decides which
    worker accepts each connection, so a test could neither aim its next request at a given worker nor
    show that BOTH answered after a change (telling them apart would need a pid header, a debug hook in
    the product). One worker per master, each on its own port, makes "the next request on each worker"
    a plain fact of the test, with the same gunicorn, gunicorn.conf.py and WSGI entry point as production.

    The workers run the production settings (config.settings, DEBUG off): DEBUG off refuses the public
    development keys, so this process takes fresh ones too, before it stores anything the workers decrypt.
    """
    env = production_env(settings, shared_db)
    servers = [Gunicorn(env, tmp_path / f"gunicorn-{name}.log", name=f"worker {name}") for name in "AB"]
    try:
        for server in servers:  # both boot at once
            server.start()
        for server in servers:
            server.wait_ready(host=settings.PLATFORM_HOST)
        yield servers
    finally:
        Gunicorn.stop_all(servers)


class CredentialEcho(HttpStub):
    """A loopback upstream that answers with the NAME of the credential it received. Names, not values:
    the platform masks every resolved secret in run outputs, and the names are what the tests compare."""

    def __init__(self):
        self.names: dict[str, str] = {}
        super().__init__(self._answer)

    def credential(self, name: str) -> str:
        """A fresh secret the upstream will recognize as `name`."""
        value = f"staleness-{name}-{secrets.token_hex(12)}"
        self.names[value] = name
        return value

    def _answer(self, request: RecordedRequest) -> StubResponse:
        authorization = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
        scheme, _, token = authorization.partition(" ")
        return StubResponse(200, {"credential": self.names.get(token, "none") if scheme == "Bearer" else "none"})


@pytest.fixture
def credential_echo():
    with CredentialEcho() as stub:
        yield stub


# ---- the world -----------------------------------------------------------------------------------

@dataclass
class Scene:
    """An App (private) whose version calls the upstream with a shared connection and with the end
    user's linked connection, and a way to run it on a given worker through either lookup path."""

    project: Any
    upstream: CredentialEcho
    shared: Connection
    workflow: Workflow
    requirement: Requirement
    v1: WorkflowVersion
    v2: WorkflowVersion
    app: App
    key: str
    platform_host: str

    def run(self, worker: Gunicorn, *, via: str = "host", key: str | None = "default", user_id: str | None = "user-42",
            hostname: str | None = None, app: App | None = None) -> tuple[int, Any]:
        app = app or self.app
        if via == "host":
            path, host = "/v1/runs", hostname or app.hostname
        else:
            path, host = f"/apps/{app.id}/v1/runs", self.platform_host
        key = self.key if key == "default" else key
        body = {"input": {"question": "which account?"}, **({"user_id": user_id} if user_id else {})}
        return worker.request("POST", path, host=host, body=body,
                              headers={"Authorization": f"Bearer {key}"} if key else None)

    def link(self, user_id: str, credential: str) -> None:
        """Link (or relink) the user's account as the connect flow does."""
        end_user_connection_save(app=self.app, user_id=user_id, requirement=self.requirement,
                                 config={"url": self.upstream.url, "api_key": self.upstream.credential(credential)})


def version(workflow: Workflow, upstream: CredentialEcho, shared: Connection, *, release: str,
            requirement: Requirement | None = None, output: dict | None = None) -> WorkflowVersion:
    nodes = [factories.http_node("shared", ref={"id": str(shared.id)}, url=f"{upstream.url}/shared")]
    fields = {"release": release, "shared": "{{ nodes.shared.output.body.credential }}"}
    if requirement is not None:
        nodes.append(factories.http_node("mine", ref={"requirement": str(requirement.id)}, url=f"{upstream.url}/mine",
                                         depends_on=("shared",)))
        fields["mine"] = "{{ nodes.mine.output.body.credential }}"
    return factories.make_version(workflow, factories.definition(*nodes, output={**fields, **(output or {})}))


@pytest.fixture
def scene(workers, credential_echo, settings) -> Scene:
    project = factories.make_project("Acme", "Billing")
    shared = factories.make_connection(project, name="shared-billing",
                                       config={"url": credential_echo.url, "api_key": credential_echo.credential("shared-1")})
    workflow = factories.make_workflow(project, "staleness")
    requirement = factories.make_requirement(workflow)
    v1 = version(workflow, credential_echo, shared, release="1", requirement=requirement)
    # v2 behaves differently: another release and an output field v1 does not have.
    v2 = version(workflow, credential_echo, shared, release="2", requirement=requirement,
                 output={"changelog": "asks for the new field"})
    app = factories.make_app(project, name="Staleness bot", version=v1)
    scene = Scene(project=project, upstream=credential_echo, shared=shared, workflow=workflow, requirement=requirement,
                  v1=v1, v2=v2, app=app, key=factories.make_key(project, name="owner"),
                  platform_host=settings.PLATFORM_HOST)
    scene.link("user-42", "user42-1")
    scene.link("user-43", "user43-1")
    return scene


# ---- helpers -------------------------------------------------------------------------------------

def alternate(workers: list[Gunicorn]):
    """A, B, A, B: on the App's hostname, then through /apps/<id>/ on the platform host."""
    for via in ("host", "path"):
        for worker in workers:
            yield worker, via


def explain(worker: Gunicorn, via: str, status: int, body: Any) -> str:
    return f"{worker.name} via {via} answered {status}: {body}\n--- {worker.name} log ---\n{worker.log_tail()}"


def completed(scene: Scene, worker: Gunicorn, via: str, expect: dict | None = None, **kwargs) -> dict:
    """A completed run's output; with `expect`, those output fields must have those values (None: absent)."""
    status, body = scene.run(worker, via=via, **kwargs)
    assert status == 200 and body["status"] == "completed", explain(worker, via, status, body)
    output = body["output"]
    if expect is not None:
        assert {name: output.get(name) for name in expect} == expect, explain(worker, via, status, output)
    return output


def warm(scene: Scene, workers: list[Gunicorn], **kwargs) -> dict:
    """Several completed runs on each worker and lookup path, all with the same output (returned)."""
    outputs = [completed(scene, worker, via, **kwargs)
               for _ in range(WARM_ROUNDS) for worker in workers for via in ("host", "path")]
    assert all(output == outputs[0] for output in outputs), outputs
    return outputs[0]


def refused(scene: Scene, worker: Gunicorn, via: str, status: int, code: str, **kwargs) -> None:
    answer_status, body = scene.run(worker, via=via, **kwargs)
    assert answer_status == status and body["error"]["code"] == code, explain(worker, via, answer_status, body)


# ---- 1. access keys ------------------------------------------------------------------------------

def test_a_revoked_access_key_is_refused_by_every_worker(scene, workers, client):
    other_key = factories.make_key(scene.project, name="other")
    warm(scene, workers)
    warm(scene, workers, key=other_key)
    operator = get_user_model().objects.create_superuser("operator", "operator@example.com", "pw-operator")
    client.force_login(operator)
    key_id = scene.project.access_keys.get(name="owner").pk

    response = changelist_action(client, reverse("admin:accounts_accesskey_changelist"), "revoke_keys", [key_id],
                                 post="yes")  # the operator's way to revoke a key: the admin action, confirmed
    assert response.status_code == 302

    for worker, via in alternate(workers):
        refused(scene, worker, via, 401, "unauthorized")
    for worker, via in alternate(workers):
        completed(scene, worker, via, key=other_key, expect={"shared": "shared-1"})


# ---- 2. deployments ------------------------------------------------------------------------------

def test_a_deploy_then_a_rollback_take_effect_on_every_worker(scene, workers):
    assert warm(scene, workers)["release"] == "1"

    deploy(app=scene.app, version=scene.v2, actor="test")
    for worker, via in alternate(workers):
        completed(scene, worker, via, expect={"release": "2", "changelog": "asks for the new field"})

    rollback(app=scene.app, actor="test")
    for worker, via in alternate(workers):
        completed(scene, worker, via, expect={"release": "1", "changelog": None})


# ---- 3. shared connections -----------------------------------------------------------------------

def test_a_rotated_shared_connection_key_reaches_the_upstream_from_every_worker(scene, workers):
    assert warm(scene, workers)["shared"] == "shared-1"

    connection_update_config(connection=scene.shared, actor="test",
                             config={"url": scene.upstream.url, "api_key": scene.upstream.credential("shared-2")})

    for worker, via in alternate(workers):
        completed(scene, worker, via, expect={"shared": "shared-2"})


# ---- 4. end-user links ---------------------------------------------------------------------------

def test_an_unlinked_user_is_refused_by_every_worker_until_relinked(scene, workers):
    assert warm(scene, workers)["mine"] == "user42-1"
    assert warm(scene, workers, user_id="user-43")["mine"] == "user43-1"

    end_user_unlink(app=scene.app, user_id="user-42", requirement=scene.requirement)
    for worker, via in alternate(workers):
        refused(scene, worker, via, 409, "requirements_unsatisfied")
    for worker, via in alternate(workers):  # the other user's link is untouched
        completed(scene, worker, via, user_id="user-43", expect={"mine": "user43-1"})

    scene.link("user-42", "user42-2")
    for worker, via in alternate(workers):
        completed(scene, worker, via, expect={"mine": "user42-2"})


def test_an_expired_link_is_refused_by_every_worker_until_relinked(scene, workers):
    assert warm(scene, workers)["mine"] == "user42-1"

    link = end_user_link(app=scene.app, user_id="user-42", requirement=scene.requirement)
    connection_set_status(connection=link.connection, status=Connection.Status.EXPIRED)
    for worker, via in alternate(workers):
        refused(scene, worker, via, 409, "requirements_unsatisfied")

    scene.link("user-42", "user42-2")  # the user reconnects: same connection, new key, active again
    for worker, via in alternate(workers):
        completed(scene, worker, via, expect={"mine": "user42-2"})


# ---- 5. App routing ------------------------------------------------------------------------------

def test_a_new_hostname_routes_on_every_worker_and_the_old_one_stops(scene, workers):
    old_hostname = scene.app.hostname
    warm(scene, workers)

    app_update(app=scene.app, hostname="billing-bot.example.test", actor="test")
    for worker in workers:
        status, body = scene.run(worker, hostname=old_hostname)
        assert status == 400 and body["error"]["code"] == "bad_request", explain(worker, "old host", status, body)
    for worker, via in alternate(workers):
        completed(scene, worker, via, hostname="billing-bot.example.test", expect={"shared": "shared-1"})


def test_an_app_made_private_refuses_anonymous_runs_on_every_worker(scene, workers):
    # Anonymous runs act as no end user: a version without a requirement, on an App of its own.
    public = factories.make_app(scene.project, name="Public bot", access_type=App.AccessType.PUBLIC,
                                version=version(scene.workflow, scene.upstream, scene.shared, release="public"))
    assert warm(scene, workers, app=public, key=None, user_id=None)["release"] == "public"

    app_update(app=public, access_type=App.AccessType.PRIVATE, actor="test")
    for worker, via in alternate(workers):
        refused(scene, worker, via, 401, "unauthorized", app=public, key=None, user_id=None)
    for worker, via in alternate(workers):  # with a key it still runs
        completed(scene, worker, via, app=public, user_id=None, expect={"release": "public"})
