"""SPEC §13 on the hosted page in a real browser (Playwright driving the system Chromium): the page asks only
for the secret the builder did not fix, shows the App's branding (its accent colour applied under the strict
CSP, through the hashed inline style), refuses a rejected key without storing anything, and shows the account
after linking. Screenshots go to test-artifacts/ (ignored by git)."""

from __future__ import annotations

import base64

from apps.connect.models import EndUserLink
from apps.connections.models import Connection
from apps.deployments.services import app_update
from tests.conftest import assert_no_canary
from tests.connect.link_fields_support import BAD_KEY, GOOD_KEY, VERIFY, _world
from tests.support.browser import ARTIFACTS, BROWSER_MARKS

pytestmark = BROWSER_MARKS

LOGO_URL = "https://logo.ledgerly.example/logo.png"
# A 1x1 PNG, served by the browser's own route handler: the test never leaves the machine.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkaPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def test_the_page_asks_for_the_secret_only_verifies_it_and_shows_branding_and_account(
    live_server, settings, project, browser, billing  # noqa: F811
):
    settings.PLATFORM_URL = live_server.url
    app, requirement = _world(project, billing.url, verify=VERIFY)
    app_update(app=app, display_name="Ledgerly", logo_url=LOGO_URL, accent_color="#0a7d5a",
               support_url="https://help.ledgerly.example/connect")
    from apps.connect import services

    _, url, _ = services.connect_token_create(app=app, user_id="user-42")

    context = browser.new_context(viewport={"width": 420, "height": 900})
    page = context.new_page()
    page.route(LOGO_URL, lambda route: route.fulfill(status=200, body=PNG, content_type="image/png"))
    violations = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text
            else None)
    page.goto(url)
    ARTIFACTS.mkdir(exist_ok=True)

    # Only the secret is asked: the URL, header and prefix are the builder's.
    form = page.locator(f"#req-{requirement.id} form.credentials")
    assert form.locator("input:not([type=hidden])").evaluate_all("els => els.map(e => e.name)") == ["f-api_key"]
    # Branding: the display name, the logo, and the accent colour applied (the hashed inline style ran).
    assert page.locator(".brand-name").inner_text() == "Ledgerly"
    assert page.locator("img.brand-logo").get_attribute("src") == LOGO_URL
    assert page.locator("img.brand-logo").evaluate("img => img.complete && img.naturalWidth") == 1
    button = form.locator("button.button-primary")
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(10, 125, 90)"
    assert page.locator("a.support-link").get_attribute("href") == "https://help.ledgerly.example/connect"
    page.screenshot(path=str(ARTIFACTS / "link-fields-1-branded-page.png"), full_page=True)

    # A rejected key: the page says so, stores nothing, and never shows the key.
    page.fill("input[name=f-api_key]", BAD_KEY)
    page.click(f"#req-{requirement.id} button.button-primary")
    assert "rejected these credentials" in page.locator(".form-error").inner_text()
    assert_no_canary(page.content())
    assert not Connection.objects.filter(app=app).exists()
    page.screenshot(path=str(ARTIFACTS / "link-fields-2-rejected-key.png"), full_page=True)

    # The right key: linked, verified, and the account shown.
    page.fill("input[name=f-api_key]", GOOD_KEY)
    page.click(f"#req-{requirement.id} button.button-primary")
    assert page.locator(f"#req-{requirement.id} .account").inner_text() == "Connected as ada@example.com"
    assert page.locator(f"#req-{requirement.id}").get_attribute("data-status") == "completed"
    page.screenshot(path=str(ARTIFACTS / "link-fields-3-connected-as.png"), full_page=True)
    assert_no_canary(page.content())
    connection = EndUserLink.objects.get(app=app).connection
    assert connection.account == {"id": "acct_1042", "label": "ada@example.com"}
    assert violations == []  # nothing the page needs was blocked by its CSP
    context.close()
