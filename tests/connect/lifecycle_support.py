"""Shared pieces of the reconnect and user-verification tests: a one-requirement App, an event recorder."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from apps.connections.signals import connection_event
from apps.deployments.models import App
from apps.workflows.models import Requirement
from tests import factories

VERIFIER_URL = "https://app.example.com/connect/verify"


@dataclass
class OneKeyApp:
    app: App
    requirement: Requirement
    upstream_url: str  # where the credentials go (the node's origin)


def one_key_app(project, *, upstream_url: str, verifier_url: str = "", name: str = "Invoice bot") -> OneKeyApp:
    """An App whose deployed version makes one HTTP call with the end user's `http_api_key` credentials."""
    workflow = factories.make_workflow(project, f"wf-{name}")
    requirement = factories.make_requirement(workflow)
    version = factories.make_version(workflow, factories.definition(
        factories.http_node("call", ref={"requirement": str(requirement.id)}, url=f"{upstream_url}/invoices"),
        input_fields={"question": {"type": "string", "required": False}},
    ))
    app = factories.make_app(project, name=name, version=version, connect_verifier_url=verifier_url)
    return OneKeyApp(app=app, requirement=requirement, upstream_url=upstream_url)


class EventRecorder:
    """Records `connection_event` signals (what apps.webhooks turns into deliveries): (type, connection_id)."""

    def __init__(self):
        self.events: list[tuple[str, str]] = []

    def __call__(self, sender, *, event_type, connection_id, data, **kwargs):
        self.events.append((event_type, str(connection_id)))

    def of(self, event_type: str) -> list[str]:
        return [cid for kind, cid in self.events if kind == event_type]


@pytest.fixture
def events():
    recorder = EventRecorder()
    connection_event.connect(recorder, weak=False, dispatch_uid="tests.connect.lifecycle_support")
    try:
        yield recorder
    finally:
        connection_event.disconnect(dispatch_uid="tests.connect.lifecycle_support")
