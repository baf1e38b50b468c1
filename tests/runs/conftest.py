import pytest

from tests import factories


@pytest.fixture
def simple_app(project, upstream):
    """A private App whose version calls the upstream once with a shared key."""
    shared = factories.make_connection(
        project, name="simple-shared", config={"url": upstream.url, "api_key": factories.CANARIES["shared_api_key"]}
    )
    workflow = factories.make_workflow(project, "simple")
    version = factories.make_version(
        workflow, factories.definition(factories.http_node("call", ref={"id": str(shared.id)}, url=f"{upstream.url}/call"))
    )
    return factories.make_app(project, name="Simple", version=version)
