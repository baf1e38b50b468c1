"""Every example of the seed page (../shared/seed/runtime-connection-overrides.txt) runs verbatim, hostname
and key aside: the two curl commands through a real `curl`, and the Python snippet as a script in its own
interpreter with `requests`, against the demo (`manage.py demo`) and against a fixture App, on a live
server. Two users, two accounts.

The examples are copied here character for character; `test_the_examples_are_the_seed_pages_own` checks
that against the page itself, so they cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from apps.deployments.models import App
from tests import factories
from tests.support.http_stub import HttpStub, RecordedRequest, StubResponse

pytestmark = pytest.mark.django_db(transaction=True)

SEED_PAGE = Path(__file__).resolve().parents[3] / "shared" / "seed" / "runtime-connection-overrides.txt"
PLACEHOLDER = "https://<your-app-hostname>"

STATUS_CURL = '''curl "https://<your-app-hostname>/v1/requirements/status?user_id=user-42" \\
  -H "Authorization: Bearer $DYNAMIQ_ACCESS_KEY"'''

RUN_CURL = '''curl -X POST "https://<your-app-hostname>/v1/runs" \\
  -H "Content-Type: application/json" \\
  -H "Authorization: Bearer $DYNAMIQ_ACCESS_KEY" \\
  -d '{
    "input": { "question": "Summarize my latest invoices" },
    "user_id": "user-42"
  }\''''

PYTHON_SNIPPET = '''import os

import requests

endpoint = "https://<your-app-hostname>"
headers = {"Authorization": f"Bearer {os.environ['DYNAMIQ_ACCESS_KEY']}"}

run = requests.post(
    f"{endpoint}/v1/runs",
    headers=headers,
    json={
        "input": {"question": "Summarize my latest invoices"},
        "user_id": "user-42",
    },
).json()

print(run["status"], run.get("output"))'''

KEY_RE = re.compile(r"dynamiq_acc_[A-Za-z0-9]{64}")


def test_the_examples_are_the_seed_pages_own():
    if not SEED_PAGE.exists():
        pytest.skip(f"the seed page is not beside this checkout ({SEED_PAGE})")
    page = SEED_PAGE.read_text()
    for example in (STATUS_CURL, RUN_CURL, PYTHON_SNIPPET):
        assert example in page


def _curl(command: str, *, base: str, key: str) -> dict:
    assert shutil.which("curl"), "curl is needed to run the seed's curl examples"
    # Hostname aside: only the placeholder origin changes (to this App's URL on the live server).
    script = command.replace(PLACEHOLDER, base) + " --silent --show-error"
    result = subprocess.run(["bash", "-c", script], env={**os.environ, "DYNAMIQ_ACCESS_KEY": key},
                            capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


def _python(*, base: str, key: str, tmp_path: Path) -> str:
    script = tmp_path / "seed_example.py"
    script.write_text(PYTHON_SNIPPET.replace(PLACEHOLDER, base) + "\n")
    # A fresh interpreter: the snippet imports `requests` itself, nothing of the test's leaks in.
    env = {"PATH": os.environ.get("PATH", ""), "DYNAMIQ_ACCESS_KEY": key}
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _for_user(command: str, user_id: str) -> str:
    return command.replace('"user_id": "user-42"', f'"user_id": "{user_id}"').replace("user_id=user-42", f"user_id={user_id}")


def _demo_account(api_key: str) -> str:
    """The account the demo upstream names for a bearer key (apps/core/demo_urls.py)."""
    return "acct_" + hashlib.sha256(f"Bearer {api_key}".encode()).hexdigest()[:8]


def test_the_seed_examples_run_against_the_demo(live_server, settings, tmp_path):
    settings.PLATFORM_URL = live_server.url  # the demo's upstream is the platform's own /demo-upstream/
    settings.DEBUG = True  # the demo refuses to run otherwise (pytest-django turns DEBUG off)
    out = StringIO()
    call_command("demo", stdout=out, stderr=StringIO())
    key = KEY_RE.search(out.getvalue()).group(0)
    app = App.objects.get(name="Invoice bot")
    base = f"{live_server.url}/apps/{app.id}"
    accounts = _demo_accounts(app)

    status = _curl(STATUS_CURL, base=base, key=key)
    assert status == {"status": "complete", "unsatisfied": []}

    seen = {}
    for user_id in ("user-42", "user-43"):
        run = _curl(_for_user(RUN_CURL, user_id), base=base, key=key)
        assert run["status"] == "completed", run
        assert run["user_id"] == user_id and run["error"] is None
        seen[user_id] = run["output"]["my_account"]
        assert seen[user_id] == accounts[user_id]
        assert "Summarize my latest invoices" in run["output"]["summary"]
    assert seen["user-42"] != seen["user-43"]

    printed = _python(base=base, key=key, tmp_path=tmp_path)
    assert printed.startswith("completed {")
    assert f"'my_account': '{accounts['user-42']}'" in printed
    assert accounts["user-43"] not in printed


def _demo_accounts(app: App) -> dict[str, str]:
    from apps.connect.models import EndUserLink

    return {link.user_id: _demo_account(link.connection.config["api_key"])
            for link in EndUserLink.objects.filter(app=app).select_related("connection")}


def _accounts_stub(request: RecordedRequest) -> StubResponse:
    """A third-party API that answers with the account its bearer key belongs to."""
    owners = {f"Bearer {factories.CANARIES['user42_api_key']}": "acct-of-user-42",
              f"Bearer {factories.CANARIES['user43_api_key']}": "acct-of-user-43"}
    account = owners.get(request.headers.get("Authorization", ""))
    if account is None:
        return StubResponse(401, {"error": "unknown key"})
    return StubResponse(200, {"account": account, "invoices": [{"id": f"{account}-1"}], "q": request.query.get("q")})


def test_the_seed_examples_run_against_a_fixture_app(live_server, tmp_path):
    project = factories.make_project("Seed", "Examples")
    key = factories.make_key(project)
    with HttpStub(_accounts_stub) as upstream:
        workflow = factories.make_workflow(project)
        requirement = factories.make_requirement(workflow)
        version = factories.make_version(workflow, factories.definition(
            factories.http_node("invoices", ref={"requirement": str(requirement.id)}, url=f"{upstream.url}/invoices",
                                params={"q": "{{ input.question }}"}),
            output={"account": "{{ nodes.invoices.output.body.account }}"},
        ))
        app = factories.make_app(project, name="Seed App", version=version)
        for user_id, canary in (("user-42", "user42_api_key"), ("user-43", "user43_api_key")):
            factories.link_end_user(app, requirement, user_id, {"url": upstream.url, "api_key": factories.CANARIES[canary]})
        base = f"{live_server.url}/apps/{app.id}"

        assert _curl(STATUS_CURL, base=base, key=key) == {"status": "complete", "unsatisfied": []}
        runs = {user_id: _curl(_for_user(RUN_CURL, user_id), base=base, key=key) for user_id in ("user-42", "user-43")}
        assert {u: (r["status"], r["output"]) for u, r in runs.items()} == {
            "user-42": ("completed", {"account": "acct-of-user-42"}),
            "user-43": ("completed", {"account": "acct-of-user-43"}),
        }
        assert runs["user-42"]["input"] == {"question": "Summarize my latest invoices"}

        printed = _python(base=base, key=key, tmp_path=tmp_path)
        assert printed == "completed {'account': 'acct-of-user-42'}\n"
        # Three runs reached the upstream, each with its own user's key, the question as sent.
        assert [r.query for r in upstream.requests] == [{"q": ["Summarize my latest invoices"]}] * 3
    for secret in factories.CANARIES.values():
        assert secret not in printed
