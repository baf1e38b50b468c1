"""The internal credentials API: only the system credential, only on the platform host; accepted calls
are audited, refused ones counted and logged (rate-limited), never one audit row each (SPEC §12)."""

import logging

import pytest
from django.conf import settings

from apps.credentials import services as credential_services
from apps.credentials.models import CredentialAccess
from tests import factories
from tests.conftest import assert_no_canary

pytestmark = pytest.mark.django_db
URL = "/internal/v1/credentials/resolve"
REFUSAL_LOGGER = "apps.credentials.services"


@pytest.fixture(autouse=True)
def fresh_refusal_counts():
    credential_services.internal_api_refusals.reset()
    yield
    credential_services.internal_api_refusals.reset()


@pytest.fixture
def linked(project, upstream):
    shared = factories.make_connection(project, config={"url": upstream.url, "api_key": factories.CANARIES["shared_api_key"]})
    workflow = factories.make_workflow(project)
    requirement = factories.make_requirement(workflow)
    version = factories.make_version(workflow, factories.definition(
        factories.http_node("a", ref={"id": str(shared.id)}, url=upstream.url),
        factories.http_node("b", ref={"requirement": str(requirement.id)}, url=upstream.url, depends_on=("a",)),
    ))
    app = factories.make_app(project, version=version)
    factories.link_end_user(app, requirement, "user-42", {"url": upstream.url, "api_key": factories.CANARIES["user42_api_key"]})
    body = {"connection_ids": [str(shared.id)], "requirement_ids": [str(requirement.id)], "app_id": str(app.id),
            "user_id": "user-42", "run_id": "11111111-1111-1111-1111-111111111111"}
    return {"app": app, "shared": shared, "requirement": requirement, "body": body}


def test_the_system_credential_resolves(api_client, linked):
    response = api_client.post(URL, linked["body"], format="json", HTTP_AUTHORIZATION=f"Bearer {settings.CREDENTIALS_API_TOKEN}")
    assert response.status_code == 200
    data = response.json()
    shared_id, requirement_id = str(linked["shared"].id), str(linked["requirement"].id)
    assert data["connections"][shared_id]["config"]["api_key"] == factories.CANARIES["shared_api_key"]
    assert data["requirements"][requirement_id]["config"]["api_key"] == factories.CANARIES["user42_api_key"]
    assert data["requirements"][requirement_id]["owner"] == "end_user"
    assert data["unsatisfied"] == []
    assert response["Cache-Control"] == "no-store"
    audit = CredentialAccess.objects.get()
    assert (audit.requester, audit.outcome, audit.user_id) == ("internal_api", "resolved", "user-42")
    assert str(audit.run_id) == linked["body"]["run_id"]
    assert_no_canary(str(audit.details) + str(audit.connection_ids) + str(audit.requirement_ids))


def test_unlinked_users_are_reported_not_guessed(api_client, linked):
    body = {**linked["body"], "user_id": "user-99"}
    data = api_client.post(URL, body, format="json", HTTP_AUTHORIZATION=f"Bearer {settings.CREDENTIALS_API_TOKEN}").json()
    assert data["requirements"] == {}
    assert data["unsatisfied"] == [{"id": str(linked["requirement"].id), "name": "billing", "title": "Your billing account"}]
    assert CredentialAccess.objects.get().outcome == "unsatisfied"


def test_connections_of_another_project_never_resolve(api_client, linked, outsider_project):
    foreign = factories.make_connection(outsider_project, name="foreign")
    body = {**linked["body"], "connection_ids": [str(foreign.id)]}
    data = api_client.post(URL, body, format="json", HTTP_AUTHORIZATION=f"Bearer {settings.CREDENTIALS_API_TOKEN}").json()
    assert data["connections"] == {}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_AUTHORIZATION": "Bearer wrong-token"},
        {"HTTP_AUTHORIZATION": f"Bearer {settings.CREDENTIALS_API_TOKEN}x"},
        {"HTTP_AUTHORIZATION": f"Basic {settings.CREDENTIALS_API_TOKEN}"},
        {"HTTP_X_INTERNAL": "true", "HTTP_X_FORWARDED_FOR": "127.0.0.1", "HTTP_X_REAL_IP": "127.0.0.1"},
        {"HTTP_X_INTERNAL_TOKEN": settings.CREDENTIALS_API_TOKEN, "HTTP_X_CREDENTIALS_API_TOKEN": settings.CREDENTIALS_API_TOKEN},
    ],
    ids=["none", "wrong", "longer", "basic-scheme", "claims-internal", "token-in-other-header"],
)
def test_anything_but_the_system_credential_is_refused_counted_and_logged(api_client, linked, headers, caplog):
    with caplog.at_level(logging.WARNING, logger=REFUSAL_LOGGER):
        response = api_client.post(URL, linked["body"], format="json", REMOTE_ADDR="192.0.2.7", **headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert_no_canary(response.content)
    # Changed deliberately (SPEC §12): a refusal is no longer an audit row (it was `count() == 1`).
    assert not CredentialAccess.objects.exists()
    assert sum(credential_services.internal_api_refusals.counts.values()) == 1
    lines = [r.getMessage() for r in caplog.records if r.name == REFUSAL_LOGGER]
    assert len(lines) == 1 and "refused" in lines[0] and "192.0.2.7" in lines[0]
    assert settings.CREDENTIALS_API_TOKEN not in lines[0]


def test_a_flood_of_refused_calls_writes_no_audit_row_and_a_bounded_number_of_log_lines(api_client, linked, caplog):
    """Found in review: each refused call wrote a CredentialAccess row, so anyone could fill the audit table."""
    clock = [1000.0]
    credential_services.internal_api_refusals._clock = lambda: clock[0]
    try:
        with caplog.at_level(logging.WARNING, logger=REFUSAL_LOGGER):
            for i in range(100):
                headers = {"HTTP_AUTHORIZATION": f"Bearer wrong-{i}"} if i % 2 else {}
                response = api_client.post(URL, linked["body"], format="json", REMOTE_ADDR="198.51.100.9", **headers)
                assert response.status_code == 401
            first_lines = [r.getMessage() for r in caplog.records if r.name == REFUSAL_LOGGER]
            # The interval passes (a fake clock, no sleeping): the next refusal's line reports the suppressed ones.
            clock[0] += settings.INTERNAL_API_REFUSAL_LOG_INTERVAL_SECONDS
            api_client.post(URL, linked["body"], format="json", HTTP_AUTHORIZATION="Bearer wrong", REMOTE_ADDR="198.51.100.9")
    finally:
        credential_services.internal_api_refusals._clock = __import__("time").monotonic
    assert CredentialAccess.objects.count() == 0
    assert credential_services.internal_api_refusals.counts == {"missing system credential": 50,
                                                                "invalid system credential": 51}
    assert len(first_lines) == 2  # one per reason, not one per call
    lines = [r.getMessage() for r in caplog.records if r.name == REFUSAL_LOGGER]
    assert len(lines) == 3
    assert "invalid system credential" in lines[-1] and "49 more refused" in lines[-1] and "51 in this process" in lines[-1]
    assert all("wrong-" not in line for line in lines)  # the presented credential is never logged


def test_accepted_calls_are_still_audited_after_refusals(api_client, linked):
    api_client.post(URL, linked["body"], format="json", HTTP_AUTHORIZATION="Bearer wrong")
    response = api_client.post(URL, linked["body"], format="json", HTTP_AUTHORIZATION=f"Bearer {settings.CREDENTIALS_API_TOKEN}")
    assert response.status_code == 200
    assert list(CredentialAccess.objects.values_list("outcome", flat=True)) == ["resolved"]


def test_access_keys_and_connect_tokens_are_refused(api_client, linked, owner_key, org_key):
    import jwt

    connect_like = jwt.encode({"app_id": str(linked["app"].id), "user_id": "user-42", "aud": "connect"}, settings.SECRET_KEY)
    for token in (owner_key, org_key, connect_like):
        response = api_client.post(URL, linked["body"], format="json", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 401


def test_it_is_not_served_through_an_app_host(api_client, linked):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {settings.CREDENTIALS_API_TOKEN}"}
    app = linked["app"]
    via_host = api_client.post(URL, linked["body"], format="json", HTTP_HOST=app.hostname, **auth)
    via_prefix = api_client.post(f"/apps/{app.id}{URL}", linked["body"], format="json", **auth)
    assert via_host.status_code == 404 and via_prefix.status_code == 404
    assert_no_canary(via_host.content + via_prefix.content)
    assert not CredentialAccess.objects.filter(outcome="resolved").exists()


def test_it_validates_the_body(api_client, linked):
    response = api_client.post(URL, {"connection_ids": "x"}, format="json",
                               HTTP_AUTHORIZATION=f"Bearer {settings.CREDENTIALS_API_TOKEN}")
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) >= {"connection_ids", "app_id"}


def test_the_public_development_token_is_refused_off_loopback(api_client, linked, settings):
    """Found in review: the development token is in the source; with it the API answers loopback only."""
    settings.CREDENTIALS_API_TOKEN_IS_DEVELOPMENT = True
    auth = {"HTTP_AUTHORIZATION": f"Bearer {settings.CREDENTIALS_API_TOKEN}"}
    remote = api_client.post(URL, linked["body"], format="json", REMOTE_ADDR="192.0.2.10", **auth)
    assert remote.status_code == 401
    assert_no_canary(remote.content)
    local = api_client.post(URL, linked["body"], format="json", REMOTE_ADDR="127.0.0.1", **auth)
    assert local.status_code == 200
