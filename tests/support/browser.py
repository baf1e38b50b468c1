"""Real Chromium for browser tests: Debian's package driven by Playwright (never a downloaded browser).

A browser test module sets `pytestmark = BROWSER_MARKS` (plus its own marks) and imports the `browser` fixture.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connections

from tests.conftest import REQUIRE_SERVICES

# Playwright's sync API keeps an event loop in this thread; the tests' own ORM calls are synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"  # screenshots (gitignored)

BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM) and not REQUIRE_SERVICES, reason="system Chromium not installed"),
]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        try:
            yield chromium
        finally:
            chromium.close()
            # While Playwright's loop runs in this thread, Django's connection registry (an asgiref Local)
            # is keyed by that context: close what the test opened there, or PostgreSQL keeps the session.
            connections.close_all()
