"""The hosted connect page in a real browser (Playwright driving the system Chromium) against a live server.

An end user links an API-key connection and an OAuth2 account (a real authorization server: django-oauth-
toolkit on loopback, on another origin), is sent back to the App's redirect URL, and the token never stays
in the address bar or the history. Then the App sees the requirements complete and a run for that user
uses the linked credentials.
"""

from __future__ import annotations

import httpx

from apps.connect.models import EndUserLink
from apps.connections.models import Connection
from tests import factories
from tests.conftest import assert_no_canary
from tests.connect.conftest import build_connect_setup
from tests.oauth_provider.support import CLIENT_SECRET, PROVIDER_PASSWORD, PROVIDER_USER, register_platform_client
from tests.support.browser import ARTIFACTS, BROWSER_MARKS
from tests.support.http_stub import HttpStub, StubResponse, echo

USER_KEY = factories.CANARIES["user42_api_key"]

pytestmark = BROWSER_MARKS



def _client_app_page(request) -> StubResponse:
    """The App owner's own site, where the end user returns."""
    if request.path == "/done":
        return StubResponse(200, b"<!doctype html><title>Back at the client app</title><h1>Welcome back</h1>",
                            {"Content-Type": "text/html"})
    return echo(request)


def test_an_end_user_links_an_api_key_and_an_oauth2_account_in_a_real_browser(
    live_server, settings, project, owner_key, browser
):
    settings.PLATFORM_URL = live_server.url
    provider_base = live_server.url.replace("localhost", "127.0.0.1")  # another origin, like a real provider
    register_platform_client(redirect_uri=f"{live_server.url}/connect/oauth2/callback")
    with HttpStub(_client_app_page) as client_site, HttpStub() as upstream:
        s = build_connect_setup(project, provider_base=provider_base, client_secret=CLIENT_SECRET,
                                origins=(client_site.url,), billing_url=upstream.url, crm_url=upstream.url)
        api = httpx.Client(base_url=f"{live_server.url}/apps/{s.app.id}", trust_env=False, timeout=30,
                           headers={"Authorization": f"Bearer {owner_key}"})
        minted = api.post("/v1/connect/tokens", json={"user_id": "user-42", "redirect_url": f"{client_site.url}/done"})
        assert minted.status_code == 201, minted.text
        token = minted.json()["token"]
        status = api.get("/v1/requirements/status", params={"user_id": "user-42"}).json()
        assert status["status"] == "incomplete" and len(status["unsatisfied"]) == 2

        context = browser.new_context(viewport={"width": 420, "height": 900})  # a phone-sized window
        page = context.new_page()
        responses = []
        page.on("response", lambda r: responses.append(r))

        landed = page.goto(minted.json()["url"])
        assert page.url == f"{live_server.url}/connect"  # the token is gone from the address bar
        assert page.title().startswith("Connect your accounts")
        assert page.get_by_role("heading", name="Connect your accounts").is_visible()
        first = next(r for r in responses if "/connect?token=" in r.url)
        assert first.status == 302
        headers = landed.all_headers()
        assert headers["content-security-policy"].startswith("default-src 'none'")
        assert headers["referrer-policy"] == "no-referrer" and headers["x-frame-options"] == "DENY"

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "connect-page-pending.png"), full_page=True)

        # 1. The API-key requirement: fill the form built from the connection type, submit.
        billing = page.locator(f"#req-{s.billing.id}")
        assert billing.get_attribute("data-status") == "pending"
        billing.get_by_label("Base URL").fill(upstream.url)
        api_key = billing.get_by_label("API key")
        assert api_key.get_attribute("type") == "password"
        api_key.fill(USER_KEY)
        billing.get_by_role("button", name="Save and connect").click()
        page.wait_for_load_state()
        assert page.url == f"{live_server.url}/connect"
        assert page.get_by_text("Your billing account is connected.").is_visible()
        assert page.locator(f"#req-{s.billing.id}").get_attribute("data-status") == "completed"
        assert_no_canary(page.content())

        # 2. The OAuth2 requirement: Connect → the provider's login and consent → back, active.
        page.get_by_role("button", name="Connect Your CRM account").click()
        page.wait_for_url(f"{provider_base}/o/login/**")
        page.fill("#id_username", PROVIDER_USER)
        page.fill("#id_password", PROVIDER_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{provider_base}/o/authorize/**")
        page.get_by_role("button", name="Authorize").click()
        page.wait_for_url(f"{live_server.url}/connect")
        assert page.get_by_text("Your CRM account is connected.").is_visible()
        assert page.locator(f"#req-{s.crm.id}").get_attribute("data-status") == "completed"
        return_link = page.get_by_role("link", name=f"Return to {client_site.url}")
        assert return_link.is_visible()
        page.screenshot(path=str(ARTIFACTS / "connect-page.png"), full_page=True)

        # 3. Everything is complete: the browser returns to the App's redirect URL by itself.
        page.wait_for_url(f"{client_site.url}/done", timeout=15000)
        assert page.get_by_role("heading", name="Welcome back").is_visible()

        # The token never appears in the history: walk it back to the start.
        visited = [page.url]
        assert page.evaluate("history.length") >= 2
        for _ in range(int(page.evaluate("history.length"))):
            if page.go_back(wait_until="load") is None and page.url == visited[-1]:
                break
            visited.append(page.url)
        assert not [url for url in visited if "token" in url or token in url], visited
        assert token not in page.content()
        assert f"{live_server.url}/connect" in visited
        # Requests to the client's site carried no Referer (Referrer-Policy: no-referrer).
        done_request = next(r for r in client_site.requests if r.path == "/done")
        assert "Referer" not in done_request.headers
        context.close()

    links = {link.requirement_id: link.connection for link in EndUserLink.objects.select_related("connection")}
    assert {c.status for c in links.values()} == {Connection.Status.ACTIVE}
    assert links[s.billing.id].config["api_key"] == USER_KEY
    oauth_token = links[s.crm.id].config["access_token"]

    assert oauth_token
    # The App sees the user complete (the run itself is the next test).
    status = api.get("/v1/requirements/status", params={"user_id": "user-42"}).json()
    assert status == {"status": "complete", "unsatisfied": []}
    other = api.get("/v1/requirements/status", params={"user_id": "user-43"}).json()
    assert other["status"] == "incomplete"


def test_a_run_for_the_user_uses_the_credentials_linked_in_the_browser(live_server, settings, project, owner_key, browser):
    """The browser links the API key; a run for that user sends it upstream, a run for another user is refused."""
    settings.PLATFORM_URL = live_server.url
    with HttpStub() as upstream:
        s = build_connect_setup(project, billing_url=upstream.url, crm_url=upstream.url)
        # The OAuth2 requirement is linked directly here (the test above drives it in the browser).
        factories.link_end_user(s.app, s.crm, "user-42", {"provider_id": str(s.provider.id),
                                                          "access_token": factories.CANARIES["access_token"],
                                                          "url": upstream.url})
        api = httpx.Client(base_url=f"{live_server.url}/apps/{s.app.id}", trust_env=False, timeout=30,
                           headers={"Authorization": f"Bearer {owner_key}"})
        url = api.post("/v1/connect/tokens", json={"user_id": "user-42"}).json()["url"]
        page = browser.new_page()
        page.goto(url)
        billing = page.locator(f"#req-{s.billing.id}")
        billing.get_by_label("Base URL").fill(upstream.url)
        billing.get_by_label("API key").fill(USER_KEY)
        billing.get_by_role("button", name="Save and connect").click()
        page.wait_for_load_state()
        assert page.get_by_text("You're all set. You can close this window.").is_visible()
        page.close()

        run = api.post("/v1/runs", json={"input": {"question": "march"}, "user_id": "user-42"})
        assert run.status_code == 200, run.text
        assert run.json()["status"] == "completed", run.text
        sent = {r.path: r.headers for r in upstream.requests}
        assert sent["/invoices"]["Authorization"] == f"Bearer {USER_KEY}"
        assert sent["/contacts"]["Authorization"] == f"Bearer {factories.CANARIES['access_token']}"
        assert_no_canary(run.text)

        refused = api.post("/v1/runs", json={"input": {"question": "march"}, "user_id": "user-43"})
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "requirements_unsatisfied"


def test_an_expired_link_shows_a_clear_page_in_the_browser(live_server, settings, project, browser):
    settings.PLATFORM_URL = live_server.url
    settings.CONNECT_TOKEN_TTL_SECONDS = -1
    s = build_connect_setup(project)
    from tests.connect.conftest import connect_token

    page = browser.new_page()
    response = page.goto(f"{live_server.url}/connect?token={connect_token(s.app, 'user-42')}")
    assert response.status == 401
    assert page.get_by_role("heading", name="This connect link has expired").is_visible()
    assert "Traceback" not in page.content()
    page.close()
