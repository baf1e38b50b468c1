"""Reconnect and user verification in a real browser (Playwright driving the system Chromium, live server).

The App has a `connect_verifier_url`: its own site (a loopback stub) whose /verify page, like an App owner's
backend would, confirms the flow for the user it knows is signed in. The end user links an API key on the
hosted page, Chromium follows the redirect to the verifier (a cross-origin redirect after a form POST, which
the page's CSP form-action must allow), and the link goes live. Then the user presses "Reconnect", enters a
new key, is verified again, and runs switch to the new key.
"""

from __future__ import annotations

import os

import httpx

from apps.connect.models import ConnectFlow
from apps.connections.models import Connection
from tests import factories
from tests.conftest import assert_no_canary
from tests.connect.lifecycle_support import one_key_app
from tests.support.browser import ARTIFACTS, BROWSER_MARKS
from tests.support.http_stub import HttpStub, StubResponse

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

OLD_KEY = factories.CANARIES["user42_api_key"]
NEW_KEY = factories.CANARIES["user43_api_key"]
USER = "user-42"

pytestmark = BROWSER_MARKS



class AppSite:
    """The App owner's site: /verify confirms the flow for the signed-in user (USER), as its backend would."""

    def __init__(self):
        self.platform_app_url = ""
        self.key = ""
        self.confirmations: list[int] = []

    def __call__(self, request) -> StubResponse:
        if request.path != "/verify":
            return StubResponse(404, b"not found", {"Content-Type": "text/plain"})
        flow_id = request.query["flow_id"][0]
        answer = httpx.post(f"{self.platform_app_url}/v1/connect/flows/{flow_id}/confirm", json={"user_id": USER},
                            headers={"Authorization": f"Bearer {self.key}"}, trust_env=False, timeout=30)
        self.confirmations.append(answer.status_code)
        return StubResponse(200, b"<!doctype html><title>Verified</title><h1>Thanks, your account is verified</h1>",
                            {"Content-Type": "text/html"})


def test_the_browser_follows_the_verifier_and_the_reconnect_button_works(live_server, settings, project, owner_key,
                                                                         browser):
    settings.PLATFORM_URL = live_server.url
    site = AppSite()
    with HttpStub(site) as app_site, HttpStub() as upstream:
        world = one_key_app(project, upstream_url=upstream.url, verifier_url=f"{app_site.url}/verify")
        site.platform_app_url, site.key = f"{live_server.url}/apps/{world.app.id}", owner_key
        api = httpx.Client(base_url=site.platform_app_url, trust_env=False, timeout=30,
                           headers={"Authorization": f"Bearer {owner_key}"})
        ARTIFACTS.mkdir(exist_ok=True)
        page = browser.new_context(viewport={"width": 420, "height": 900}).new_page()

        # 1. A first link: submit on the hosted page → the App's verifier → confirmed → active.
        page.goto(api.post("/v1/connect/tokens", json={"user_id": USER}).json()["url"])
        form = page.locator(f"#req-{world.requirement.id}")
        form.get_by_label("Base URL").fill(upstream.url)
        form.get_by_label("API key").fill(OLD_KEY)
        form.get_by_role("button", name="Save and connect").click()
        page.wait_for_url(f"{app_site.url}/verify?flow_id=*")
        assert page.get_by_role("heading", name="Thanks, your account is verified").is_visible()
        page.screenshot(path=str(ARTIFACTS / "connect-verifier-landing.png"), full_page=True)
        assert site.confirmations == [200]
        connection = Connection.objects.get(app=world.app)
        assert (connection.status, connection.config["api_key"]) == (Connection.Status.ACTIVE, OLD_KEY)

        # 2. Reconnect: a new link, the Reconnect button opens the form; the old key serves until verified.
        page.goto(api.post("/v1/connect/tokens", json={"user_id": USER}).json()["url"])
        item = page.locator(f"#req-{world.requirement.id}")
        assert item.get_attribute("data-status") == "completed"
        item.get_by_role("link", name="Reconnect").click()
        page.wait_for_load_state()
        item = page.locator(f"#req-{world.requirement.id}")
        assert item.get_attribute("data-reconnecting") == "true"
        page.screenshot(path=str(ARTIFACTS / "connect-reconnect-form.png"), full_page=True)
        item.get_by_label("Base URL").fill(upstream.url)
        item.get_by_label("API key").fill(NEW_KEY)
        item.get_by_role("button", name="Save and reconnect").click()
        page.wait_for_url(f"{app_site.url}/verify?flow_id=*")
        assert site.confirmations == [200, 200]
        assert_no_canary(page.content())

    after = Connection.objects.get(app=world.app)
    assert (after.pk, after.config["api_key"]) == (connection.pk, NEW_KEY)
    assert list(ConnectFlow.objects.order_by("created_at").values_list("kind", "status")) == [
        ("link", "confirmed"), ("reconnect", "confirmed")]
