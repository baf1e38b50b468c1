"""An end user without a linked account: the agent's tool call answers a connect link (and a URL-mode elicitation),
the user opens it in a real browser (Playwright driving the system Chromium), links the key, and the agent's next
call succeeds, with the official SDK client against a live server."""

from __future__ import annotations

from mcp_types import ElicitResult

from tests import factories
from tests.conftest import assert_no_canary
from tests.mcp.conftest import mint, with_client
from tests.support.browser import BROWSER_MARKS

USER_KEY = factories.CANARIES["header_secret"]

pytestmark = BROWSER_MARKS



def test_an_unsatisfied_user_links_in_chromium_and_the_next_call_succeeds(world, upstream, browser):
    token = mint(world, "user-44")["token"]
    elicited = []

    async def on_elicit(context, params):
        elicited.append(params)
        return ElicitResult(action="accept")

    async def call(client):
        return await client.call_tool("account-lookup", {"question": "who am i"})

    first = with_client(world.url(), token, call, elicitation_callback=on_elicit)

    assert first.is_error is True
    content = first.structured_content
    assert content["code"] == "requirements_unsatisfied"
    assert [u["name"] for u in content["unsatisfied"]] == ["billing"]
    [elicitation] = elicited
    assert (elicitation.mode, elicitation.url) == ("url", content["connect_url"])

    page = browser.new_context().new_page()
    page.goto(content["connect_url"])
    assert page.url == f"{world.base}/connect"  # the token left the address bar
    section = page.locator(f"#req-{world.requirement.id}")
    if section.get_by_label("Base URL").count():  # a requirement that fixes the URL asks only for the key
        section.get_by_label("Base URL").fill(upstream.url)
    section.get_by_label("API key").fill(USER_KEY)
    section.get_by_role("button", name="Save and connect").click()
    page.wait_for_load_state()
    assert page.locator(f"#req-{world.requirement.id}").get_attribute("data-status") == "completed"
    assert_no_canary(page.content())

    second = with_client(world.url(), token, call, elicitation_callback=on_elicit)

    assert second.is_error is False
    assert second.structured_content == {"account": "acct-44", "question": "who am i"}
    assert len(elicited) == 1  # nothing more to ask
