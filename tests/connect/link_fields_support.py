"""Shared by the link-fields tests: a billing API on loopback that accepts one key, and an App requiring it."""

from __future__ import annotations

from apps.workflows.services import requirement_create
from tests import factories
from tests.support.http_stub import StubResponse

GOOD_KEY = factories.CANARIES["user42_api_key"]
BAD_KEY = factories.CANARIES["user43_api_key"]
OPENAI_KEY = factories.CANARIES["openai_key"]


def billing_api(request):
    """Accepts GOOD_KEY in X-Api-Key (no prefix) and names its account; echoes a rejected key back (as some do)."""
    if request.path == "/v1/me":
        if request.headers.get("X-Api-Key") == GOOD_KEY:
            return StubResponse(200, {"data": {"id": "acct_1042", "email": "ada@example.com"}})
        return StubResponse(401, {"error": f"invalid key {request.headers.get('X-Api-Key')}"})
    if request.path == "/invoices":
        return StubResponse(200, {"invoices": [1, 2], "key_seen": request.headers.get("X-Api-Key") == GOOD_KEY})
    return StubResponse(404, {"error": "no such path"})


def _world(project, billing_url: str, *, verify=None, config=None, name="billing"):
    workflow = factories.make_workflow(project, f"wf-{name}")
    spec = {"connection_type": "http_api_key",
            "config": config if config is not None else {"url": billing_url, "header": "X-Api-Key", "prefix": ""}}
    if verify is not None:
        spec["verify"] = verify
    requirement = requirement_create(workflow=workflow, name=name, title="Your billing account", spec=spec)
    version = factories.make_version(workflow, factories.definition(
        factories.http_node("invoices", ref={"requirement": str(requirement.id)}, url=f"{billing_url}/invoices"),
        output={"output": "{{ nodes.invoices.output.body }}"},
    ))
    app = factories.make_app(project, name=f"App {name}", version=version)
    return app, requirement


VERIFY = {"method": "GET", "path": "/v1/me", "expect": [200], "account": {"id": "$.data.id", "label": "$.data.email"}}


