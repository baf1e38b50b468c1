"""Requests reach an App by its hostname or at /apps/<id>/; access keys decide who may call it."""

import pytest

from apps.deployments.services import app_update
from tests import factories

pytestmark = pytest.mark.django_db

BODY = {"input": {"question": "q"}}


def test_it_routes_by_app_hostname(client, simple_app, owner_key):
    response = client.post("/v1/runs", BODY, content_type="application/json", HTTP_HOST=simple_app.hostname,
                           HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 200, response.content
    assert response.json()["app_id"] == str(simple_app.id)


def test_it_routes_by_app_hostname_with_a_port(client, simple_app, owner_key):
    response = client.post("/", BODY, content_type="application/json", HTTP_HOST=f"{simple_app.hostname}:8000",
                           HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 200


def test_unknown_hosts_are_refused(client):
    response = client.get("/", HTTP_HOST="evil.example.com")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_unknown_app_id_is_404(client):
    response = client.get("/apps/00000000-0000-0000-0000-000000000000/v1/runs")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_missing_key_is_401(client, simple_app):
    response = client.post(f"/apps/{simple_app.id}/v1/runs", BODY, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("header", ["Bearer dynamiq_acc_" + "x" * 64, "Bearer not-a-key", "Basic dXNlcjpwYXNz"])
def test_invalid_credentials_are_401(client, simple_app, header):
    response = client.post(f"/apps/{simple_app.id}/v1/runs", BODY, content_type="application/json", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401


def test_a_key_of_another_project_is_403(client, simple_app, teammate_key, outsider_key):
    for key in (teammate_key, outsider_key):
        response = client.post(f"/apps/{simple_app.id}/v1/runs", BODY, content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {key}")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"


def test_an_org_wide_key_of_the_same_org_works(client, simple_app, org_key):
    response = client.post(f"/apps/{simple_app.id}/v1/runs", BODY, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {org_key}")
    assert response.status_code == 200


def test_revoked_and_expired_keys_are_401(client, simple_app, project):
    from datetime import timedelta

    from django.utils import timezone

    from apps.accounts.models import AccessKey

    expired = factories.make_key(project, expires_at=timezone.now() - timedelta(seconds=1))
    revoked = factories.make_key(project, name="revoked")
    AccessKey.objects.filter(preview__endswith=revoked[-4:], name="revoked").update(revoked_at=timezone.now())
    for key in (expired, revoked):
        response = client.post(f"/apps/{simple_app.id}/v1/runs", BODY, content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {key}")
        assert response.status_code == 401


def test_public_apps_need_no_key(client, simple_app):
    app_update(app=simple_app, access_type="public")
    response = client.post(f"/apps/{simple_app.id}/", BODY, content_type="application/json")
    assert response.status_code == 200


def test_an_app_without_deployment_is_409(client, project, owner_key):
    app = factories.make_app(project, name="Empty")
    response = client.post(f"/apps/{app.id}/v1/runs", BODY, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 409


def test_app_hosts_do_not_serve_the_admin_or_the_internal_api(client, simple_app):
    for path in ("/admin/", "/internal/v1/credentials/resolve", "/v1/connections"):
        response = client.get(path, HTTP_HOST=simple_app.hostname)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


def test_runs_are_listed_newest_first_with_filters(client, simple_app, owner_key):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {owner_key}"}
    for user in ("alice", "bob", "alice"):
        client.post(f"/apps/{simple_app.id}/v1/runs", {**BODY, "user_id": user}, content_type="application/json", **auth)
    response = client.get(f"/apps/{simple_app.id}/v1/runs", {"user_id": "alice", "page_size": 1}, **auth)
    body = response.json()
    assert body["pagination"] == {"page": 1, "page_size": 1, "page_count": 2, "total_count": 2}
    assert body["data"][0]["user_id"] == "alice"
    every = client.get(f"/apps/{simple_app.id}/v1/runs", {"status": ["completed", "failed"]}, **auth).json()
    assert every["pagination"]["total_count"] == 3
    created = [r["created_at"] for r in every["data"]]
    assert created == sorted(created, reverse=True)
    detail = client.get(f"/apps/{simple_app.id}/v1/runs/{every['data'][0]['id']}", **auth)
    assert detail.json()["id"] == every["data"][0]["id"]
    assert client.get(f"/apps/{simple_app.id}/v1/runs", {"status": "bogus"}, **auth).status_code == 400


def test_runs_of_another_app_are_404(client, simple_app, project, owner_key):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {owner_key}"}
    run_id = client.post(f"/apps/{simple_app.id}/v1/runs", BODY, content_type="application/json", **auth).json()["id"]
    other = factories.make_app(project, name="Other", version=simple_app.current_deployment.workflow_version)
    assert client.get(f"/apps/{other.id}/v1/runs/{run_id}", **auth).status_code == 404


class TestPublicAppsActAsNoEndUser:
    """Found in review: without this, anyone could run as, mint connect tokens for, or read the runs of
    any end user of a public App."""

    @pytest.fixture
    def public_app(self, simple_app):
        return app_update(app=simple_app, access_type="public")

    def test_anonymous_runs_without_user_id_work_and_can_be_read_back(self, client, public_app):
        response = client.post(f"/apps/{public_app.id}/v1/runs", BODY, content_type="application/json")
        assert response.status_code == 200
        run_id = response.json()["id"]
        assert client.get(f"/apps/{public_app.id}/v1/runs/{run_id}").status_code == 200

    def test_anonymous_runs_as_an_end_user_are_refused(self, client, public_app, upstream):
        response = client.post(f"/apps/{public_app.id}/v1/runs", {**BODY, "user_id": "victim"}, content_type="application/json")
        assert response.status_code == 401
        assert response.json()["error"]["details"] == {"user_id": ["needs an access key"]}
        assert upstream.requests == []

    @pytest.mark.parametrize("method, path, body", [
        ("get", "/v1/runs", None),
        ("get", "/v1/requirements/status?user_id=victim", None),
        ("post", "/v1/connect/tokens", {"user_id": "victim"}),
    ])
    def test_per_user_endpoints_need_a_key(self, client, public_app, method, path, body):
        kwargs = {"content_type": "application/json", "data": body} if body else {}
        response = getattr(client, method)(f"/apps/{public_app.id}{path}", **kwargs)
        assert response.status_code == 401

    def test_a_users_run_is_hidden_from_anonymous_callers(self, client, public_app, owner_key):
        auth = {"HTTP_AUTHORIZATION": f"Bearer {owner_key}"}
        run_id = client.post(f"/apps/{public_app.id}/v1/runs", {**BODY, "user_id": "victim"},
                             content_type="application/json", **auth).json()["id"]
        for path in ("", "/events"):
            assert client.get(f"/apps/{public_app.id}/v1/runs/{run_id}{path}").status_code == 404
        assert client.post(f"/apps/{public_app.id}/v1/runs/{run_id}/cancel").status_code == 404
        assert client.get(f"/apps/{public_app.id}/v1/runs/{run_id}", **auth).status_code == 200
