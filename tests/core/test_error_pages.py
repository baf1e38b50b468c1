"""404 and 500: an HTML page for a browser outside the APIs; the JSON envelope for the APIs and App hosts."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from apps.core import error_pages
from tests import factories

BROWSER = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.mark.django_db
def test_a_browser_gets_an_html_404_under_the_admin(admin_client):
    response = admin_client.get("/admin/runs/nothing-here/", **BROWSER)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    body = response.content.decode()
    assert "<h1>Page not found</h1>" in body and "/admin/runs/nothing-here/" in body and '"error"' not in body


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/v1/nothing-here", "/internal/v1/nothing-here", "/apps/nothing-here/v1/runs"])
def test_api_paths_answer_the_json_envelope_even_to_a_browser(client, path):
    response = client.get(path, **BROWSER)
    assert response.status_code in (400, 404)
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] in ("not_found", "bad_request")


@pytest.mark.django_db
def test_an_app_host_answers_json_to_a_browser(client, project):
    app = factories.make_app(project, name="Bot")
    response = client.get("/no-such-page", HTTP_HOST=app.hostname, **BROWSER)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_a_client_that_does_not_ask_for_html_gets_json(admin_client):
    response = admin_client.get("/admin/runs/nothing-here/", HTTP_ACCEPT="*/*")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_a_browser_gets_an_html_500_outside_the_apis():
    request = RequestFactory().get("/admin/", **BROWSER)
    response = error_pages.server_error(request)
    assert response.status_code == 500 and response["Content-Type"].startswith("text/html")
    assert "Something went wrong" in response.content.decode()
    api = error_pages.server_error(RequestFactory().get("/v1/connections", **BROWSER))
    assert api.status_code == 500 and api["Content-Type"] == "application/json"
