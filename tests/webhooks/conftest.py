"""Actors and helpers for the webhook tests: the connect setup of tests/connect (App "Invoice bot" with an
http_api_key requirement `billing` and an OAuth2 requirement `crm`) and webhooks created through the service."""

from __future__ import annotations

import json

import pytest

from apps.webhooks.models import WebhookDelivery, WebhookEndpoint
from apps.webhooks.services import webhook_create
from tests.connect.conftest import bearer, build_connect_setup, connect_token  # noqa: F401  (re-exported)

# Committed database shared with executor threads, and the thread executor (tests/runs/conftest.py).
from tests.runs.conftest import _sqlite_template, shared_db, thread_executor  # noqa: F401  (fixtures)

ALICE = "alice"
ALICE_KEY = "canary-webhook-alice-key-5d2e9f"


@pytest.fixture
def setup(project):
    return build_connect_setup(project)


def make_webhook(project, url: str = "http://127.0.0.1:9/in", *, events=("*",), **kwargs) -> WebhookEndpoint:
    return webhook_create(project=project, url=url, events=list(events), **kwargs)


def payloads(endpoint: WebhookEndpoint | None = None) -> list[dict]:
    """The bodies of the deliveries written so far (oldest first), as JSON."""
    queryset = WebhookDelivery.objects.order_by("created_at", "event_type")
    if endpoint is not None:
        queryset = queryset.filter(endpoint=endpoint)
    return [json.loads(body) for body in queryset.values_list("body", flat=True)]


def types(endpoint: WebhookEndpoint | None = None) -> list[str]:
    return [p["type"] for p in payloads(endpoint)]


def link_via_api(api_client, setup, user_id: str = ALICE, api_key: str = ALICE_KEY):
    return api_client.post(
        f"/v1/connect/requirements/{setup.billing.id}/credentials",
        {"type": "http_api_key", "config": {"url": "https://billing.example.com", "api_key": api_key}},
        format="json", **bearer(connect_token(setup.app, user_id)),
    )


def unlink_via_api(api_client, setup, user_id: str = ALICE):
    return api_client.delete(f"/v1/connect/requirements/{setup.billing.id}/connection",
                             **bearer(connect_token(setup.app, user_id)))
