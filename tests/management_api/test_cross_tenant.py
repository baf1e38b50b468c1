"""Cross-tenant matrix, generated from the URL configuration: every management endpoint × every method ×
a key of another project or organization × this project's IDs → 404, never 2xx.

A new endpoint joins the matrix by being added to apps/management_api/urls.py; a new path parameter fails
the test until `_ids` knows which object of the world to put there.
"""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, get_resolver

from apps.connect.models import EndUserLink
from apps.connections.models import Connection, OAuthProvider
from apps.deployments.models import App, Deployment
from apps.webhooks.models import WebhookDelivery, WebhookEndpoint
from apps.workflows.models import Requirement, Workflow, WorkflowVersion
from tests import factories
from tests.factories import CANARIES
from tests.management_api.conftest import client_for

pytestmark = pytest.mark.django_db

PUBLIC = {"schema", "docs"}  # the OpenAPI document and its page are public on purpose
METHODS = ("get", "post", "put", "patch", "delete")


def _endpoints() -> list[tuple[str, type]]:
    found = []
    for pattern in get_resolver("apps.management_api.urls").url_patterns:
        assert isinstance(pattern, URLPattern)
        if pattern.name in PUBLIC:
            continue
        found.append((str(pattern.pattern), pattern.callback.view_class))
    return found


def _ids(world) -> dict[str, str]:
    return {
        "connection_id": str(world.oauth_connection.id), "provider_id": str(world.provider.id),
        "workflow_id": str(world.workflow.id), "requirement_id": str(world.requirement.id),
        "version_id": str(world.version.id), "app_id": str(world.app.id), "link_id": str(world.link.id),
        "webhook_id": str(world.webhook.id), "delivery_id": str(world.webhook_delivery.id),
    }


def _bodies(world) -> dict[str, dict]:
    """Bodies that would succeed for the owner, so a 404 can only come from the scope check."""
    project_id = str(world.project.id)
    return {
        "connections": {"name": "intruder", "type": "http_api_key", "project_id": project_id,
                        "config": {"url": "https://evil.example.com", "api_key": "x"}},
        "connections/<uuid:connection_id>": {"config": {"url": "https://evil.example.com"}},
        "oauth2/providers": {"name": "intruder", "authorize_url": "https://evil.example.com/a", "project_id": project_id,
                             "token_url": "https://evil.example.com/t", "client_id": "x"},
        "oauth2/providers/<uuid:provider_id>": {"client_id": "stolen"},
        "workflows": {"name": "intruder", "project_id": project_id},
        "workflows/<uuid:workflow_id>/requirements": {"name": "intruder", "title": "x",
                                                       "spec": {"connection_type": "http"}},
        "workflows/<uuid:workflow_id>/requirements/<uuid:requirement_id>": {"title": "Intruder"},
        "workflows/<uuid:workflow_id>/versions": {"definition": world.version.definition},
        "apps": {"name": "intruder", "project_id": project_id},
        "apps/<uuid:app_id>": {"access_type": "public"},
        "apps/<uuid:app_id>/deployments": {"workflow_version_id": str(world.version.id)},
        "apps/<uuid:app_id>/rollback": {},
        "webhooks": {"url": "http://127.0.0.1:9/intruder", "events": ["*"], "project_id": project_id},
        "webhooks/<uuid:webhook_id>": {"url": "http://127.0.0.1:9/intruder"},
    }


def _state():
    return [
        list(model.objects.order_by("pk").values_list("pk", flat=True))
        for model in (Connection, OAuthProvider, Workflow, Requirement, WorkflowVersion, App, Deployment, EndUserLink,
                      WebhookEndpoint, WebhookDelivery)
    ] + [
        sorted((str(c.pk), str(c.config)) for c in Connection.objects.all()),
        sorted((str(a.pk), a.access_type, a.name, str(a.current_deployment_id)) for a in App.objects.all()),
        sorted((str(r.pk), r.title) for r in Requirement.objects.all()),
        sorted((str(p.pk), p.client_id) for p in OAuthProvider.objects.all()),
        sorted((str(w.pk), w.url, w.secret, w.enabled) for w in WebhookEndpoint.objects.all()),
    ]


@pytest.fixture
def intruders(teammate_key, outsider_key, outsider_project):
    return {
        "teammate (same org, other project)": client_for(teammate_key),
        "outsider (other org)": client_for(outsider_key),
        "outsider org-wide key": client_for(factories.make_key(outsider_project, org_wide=True)),
    }


def test_every_endpoint_refuses_other_tenants(world, intruders):
    ids, bodies = _ids(world), _bodies(world)
    endpoints = _endpoints()
    assert len(endpoints) == 23  # SPEC.md section 8, and the 6 webhook endpoints of section 13
    before = _state()
    checked = 0
    for route, view_class in endpoints:
        params = re.findall(r"<\w+:(\w+)>", route)
        unknown = set(params) - set(ids)
        assert not unknown, f"add an ID for {unknown} to _ids()"
        url = "/v1/" + re.sub(r"<\w+:(\w+)>", lambda m: ids[m.group(1)], route)
        allowed = {m for m in METHODS if hasattr(view_class, m)}
        for who, client in intruders.items():
            for method in METHODS:
                call = getattr(client, method)
                if method == "get" and not params:
                    response = call(url, {"project_id": str(world.project.id)})
                else:
                    response = call(url, bodies.get(route, {}), format="json")
                expected = 404 if method in allowed else 405
                assert response.status_code == expected, (who, method.upper(), url, response.status_code, response.content)
                assert response.json()["error"]["code"] in ("not_found", "method_not_allowed")
                checked += 1
    assert checked == len(endpoints) * len(METHODS) * len(intruders)
    assert _state() == before, "an intruder changed something"


def test_lists_without_a_project_filter_show_nothing_of_this_project(world, intruders):
    for route, view_class in _endpoints():
        if "<" in route or not hasattr(view_class, "get"):
            continue
        for who, client in intruders.items():
            response = client.get("/v1/" + route)
            assert response.status_code == 200, (who, route)
            assert response.json()["data"] == [], (who, route)
            for value in CANARIES.values():
                assert value not in response.content.decode()


def test_every_endpoint_wants_a_key(world, anonymous):
    ids = _ids(world)
    for route, view_class in _endpoints():
        url = "/v1/" + re.sub(r"<\w+:(\w+)>", lambda m: ids[m.group(1)], route)
        for method in METHODS:
            if not hasattr(view_class, method):
                continue
            response = getattr(anonymous, method)(url)
            assert response.status_code == 401, (method, url)
            assert response["WWW-Authenticate"].startswith("Bearer")
