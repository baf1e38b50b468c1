"""Both engine resolvers: in process, and over HTTP through the internal API (workers apart from the web tier)."""

import pytest
from django.conf import settings

from apps.credentials.resolvers import CredentialsApiError, HttpResolver
from apps.credentials.services import InProcessResolver
from apps.runs.requests import RunRequest
from apps.runs.services import run_sync
from tests import factories


@pytest.fixture
def scenario(project, upstream):
    shared = factories.make_connection(project, config={"url": upstream.url, "api_key": factories.CANARIES["shared_api_key"]})
    workflow = factories.make_workflow(project)
    requirement = factories.make_requirement(workflow)
    version = factories.make_version(workflow, factories.definition(
        factories.http_node("shared", ref={"id": str(shared.id)}, url=f"{upstream.url}/shared"),
        factories.http_node("mine", ref={"requirement": str(requirement.id)}, url=f"{upstream.url}/mine", depends_on=("shared",)),
    ))
    app = factories.make_app(project, version=version)
    factories.link_end_user(app, requirement, "user-42", {"url": upstream.url, "api_key": factories.CANARIES["user42_api_key"]})
    return app


def _seen(upstream):
    return [(r.path, r.headers["Authorization"]) for r in upstream.requests]


@pytest.mark.django_db(transaction=True)
def test_the_http_resolver_runs_a_workflow_through_the_internal_api(scenario, live_server, upstream):
    resolver = HttpResolver(base_url=live_server.url, token=settings.CREDENTIALS_API_TOKEN)
    run, _ = run_sync(app=scenario, request=RunRequest(input={"question": "q"}, user_id="user-42"), resolver=resolver)
    assert run.status == "completed", run.error
    assert _seen(upstream) == [
        ("/shared", f"Bearer {factories.CANARIES['shared_api_key']}"),
        ("/mine", f"Bearer {factories.CANARIES['user42_api_key']}"),
    ]
    from apps.credentials.models import CredentialAccess

    assert CredentialAccess.objects.get().requester == "internal_api"


@pytest.mark.django_db(transaction=True)
def test_the_http_resolver_fails_closed_with_a_wrong_token(scenario, live_server):
    resolver = HttpResolver(base_url=live_server.url, token="wrong")
    with pytest.raises(CredentialsApiError) as info:
        resolver.resolve(connection_ids=[], requirement_ids=[], app_id=str(scenario.id), user_id=None, run_id=None)
    assert "401" in str(info.value)


@pytest.mark.django_db
def test_the_in_process_resolver_runs_the_same_workflow(scenario, upstream):
    run, _ = run_sync(app=scenario, request=RunRequest(input={"question": "q"}, user_id="user-42"), resolver=InProcessResolver())
    assert run.status == "completed"
    assert _seen(upstream)[1] == ("/mine", f"Bearer {factories.CANARIES['user42_api_key']}")
