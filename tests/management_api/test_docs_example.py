"""The client example in docs/api.md, run as written against a live server and a loopback upstream."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from apps.runs.models import Run
from tests.factories import CANARIES

pytestmark = pytest.mark.django_db(transaction=True)

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_the_documented_client_example_works(live_server, owner_key, upstream, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    monkeypatch.setenv("PLATFORM_URL", live_server.url)
    monkeypatch.setenv("UPSTREAM_URL", upstream.url)
    monkeypatch.setenv("DYNAMIQ_ACCESS_KEY", owner_key)
    monkeypatch.setenv("BILLING_API_KEY", CANARIES["shared_api_key"])
    monkeypatch.setenv("USER_42_API_KEY", CANARIES["user42_api_key"])
    exec(compile(code, str(DOC), "exec"), {"__name__": "docs_example"})  # noqa: S102
    printed = capsys.readouterr().out
    assert "completed" in printed
    run = Run.objects.get()
    assert run.status == "completed" and run.user_id == "user-42"
    invoices, totals = upstream.requests
    assert invoices.headers["Authorization"] == f"Bearer {CANARIES['user42_api_key']}"
    assert totals.headers["Authorization"] == f"Bearer {CANARIES['shared_api_key']}"
    for secret in CANARIES.values():
        assert secret not in printed
