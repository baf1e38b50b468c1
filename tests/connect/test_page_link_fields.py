"""The hosted page with SPEC §13 link fields: builder-fixed fields, verification, account and the App's branding.
Driven with Django's test client against a loopback upstream (tests/connect/test_browser_link_fields.py drives
Chromium)."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from django.test import Client

from apps.connect.models import EndUserLink
from apps.connections.models import Connection
from apps.deployments.services import app_update
from tests.conftest import assert_no_canary
from tests.connect.conftest import connect_token
from tests.connect.link_fields_support import BAD_KEY, GOOD_KEY, VERIFY, _world

pytestmark = pytest.mark.django_db


@pytest.fixture
def linked_world(project, billing):
    app, requirement = _world(project, billing.url, verify=VERIFY)
    return app, requirement


def _open(client: Client, app) -> None:
    assert client.get("/connect", {"token": connect_token(app, "user-42")}).status_code == 302


def _inputs(html: str) -> list[str]:
    return re.findall(r'<input id="[^"]*" name="(f-[^"]+)"', html)


def test_the_page_asks_only_for_the_secret(client, linked_world):
    app, _ = linked_world
    _open(client, app)
    html = client.get("/connect").content.decode()
    assert _inputs(html) == ["f-api_key"]


def test_the_page_shows_the_account_after_linking(client, linked_world):
    app, requirement = linked_world
    _open(client, app)
    response = client.post(f"/connect/requirements/{requirement.id}/credentials", {"f-api_key": GOOD_KEY}, follow=True)
    html = response.content.decode()
    assert "Connected as <strong>ada@example.com</strong>" in html
    assert_no_canary(html)


def test_the_page_refuses_a_posted_fixed_field(client, linked_world):
    app, requirement = linked_world
    _open(client, app)
    response = client.post(f"/connect/requirements/{requirement.id}/credentials",
                           {"f-api_key": GOOD_KEY, "f-url": "https://attacker.example"})
    assert response.status_code == 400
    assert "fixed by the application" in response.content.decode()
    assert not Connection.objects.filter(app=app).exists()


def test_the_page_says_a_rejected_key_was_rejected_without_echoing_it(client, linked_world):
    app, requirement = linked_world
    _open(client, app)
    response = client.post(f"/connect/requirements/{requirement.id}/credentials", {"f-api_key": BAD_KEY})
    assert response.status_code == 400
    html = response.content.decode()
    assert "rejected these credentials" in html
    assert_no_canary(html)
    assert not EndUserLink.objects.filter(app=app).exists()


def test_the_page_shows_the_apps_branding(client, linked_world):
    app, _ = linked_world
    app_update(app=app, display_name="Ledgerly", logo_url="https://cdn.ledgerly.example/logo.png",
               accent_color="#0A7D5A", support_url="https://help.ledgerly.example/connect")
    _open(client, app)
    response = client.get("/connect")
    html = response.content.decode()
    assert "<strong>Ledgerly</strong> needs access" in html
    assert '<img class="brand-logo" src="https://cdn.ledgerly.example/logo.png"' in html
    assert 'href="https://help.ledgerly.example/connect"' in html
    csp = response["Content-Security-Policy"]
    assert "img-src 'self' https://cdn.ledgerly.example;" in csp
    # The one inline style is allowed by its hash, computed here from what the page carries.
    style = re.search(r"<style>(.*?)</style>", html).group(1)
    assert "--accent:#0a7d5a" in style
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'self' 'sha256-{digest}';" in csp
    assert "unsafe" not in csp


def test_without_branding_the_page_uses_the_apps_name_and_no_inline_style(client, linked_world):
    app, _ = linked_world
    _open(client, app)
    response = client.get("/connect")
    html = response.content.decode()
    assert f"<strong>{app.name}</strong> needs access" in html
    assert "<style>" not in html and "brand-logo" not in html
    assert "style-src 'self';" in response["Content-Security-Policy"]


def test_a_stored_non_https_logo_is_not_shown(client, linked_world):
    app, _ = linked_world
    app.logo_url, app.accent_color = "http://cdn.example/logo.png", "red;}a{"  # rows predating the checks
    app.save(update_fields=["logo_url", "accent_color"])
    _open(client, app)
    html = client.get("/connect").content.decode()
    assert "brand-logo" not in html and "<style>" not in html
