"""Drive the test OAuth2 provider (django-oauth-toolkit under /o/) over real HTTP, as a user would."""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin

import httpx

from tests.oauth_provider.support import PROVIDER_PASSWORD, PROVIDER_USER

_INPUT = re.compile(r"<input([^>]*)>", re.I)
_ATTR = re.compile(r'(\w+)="([^"]*)"')


def hidden_inputs(page: str) -> dict[str, str]:
    fields = {}
    for match in _INPUT.finditer(page):
        attrs = {k.lower(): html.unescape(v) for k, v in _ATTR.findall(match.group(1))}
        if attrs.get("type", "").lower() == "hidden" and "name" in attrs:
            fields[attrs["name"]] = attrs.get("value", "")
    return fields


def consent(authorize_url: str, *, allow: bool = True) -> httpx.Response:
    """Log in to the provider and answer its consent form. Returns the provider's final answer (a redirect to
    the client's redirect URI with `code` and `state`, or an error page)."""
    with httpx.Client(follow_redirects=False, timeout=15, trust_env=False) as browser:
        response = browser.get(authorize_url)
        if response.status_code == 302 and "/o/login/" in response.headers["location"]:
            login_url = urljoin(authorize_url, response.headers["location"])
            page = browser.get(login_url)
            form = hidden_inputs(page.text)
            response = browser.post(login_url, data={**form, "username": PROVIDER_USER, "password": PROVIDER_PASSWORD})
            assert response.status_code == 302, response.text[:500]
            response = browser.get(urljoin(authorize_url, response.headers["location"]))
        if response.status_code != 200 or 'id="authorizationForm"' not in response.text:
            return response
        form = hidden_inputs(response.text)
        if allow:
            form["allow"] = "Authorize"
        return browser.post(authorize_url.split("?")[0], data=form)
