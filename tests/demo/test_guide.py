"""What the demo seeds for trying things out, and what it prints, agree with the README."""

from __future__ import annotations

import re
from pathlib import Path

from apps.deployments.models import App
from apps.deployments.services import rollback_target
from tests.demo.test_commands import run_demo

README = Path(__file__).resolve().parents[2] / "README.md"


def test_demo_deploys_two_versions_so_there_is_something_to_roll_back_to(db):
    run_demo()
    app = App.objects.get(name="Invoice bot")
    history = list(app.deployments.order_by("created_at").values_list("workflow_version__number", flat=True))
    assert history == [1, 2]
    assert rollback_target(app=app).workflow_version.number == 1
    run_demo()  # idempotent: nothing new deployed
    assert app.deployments.count() == 2


def test_the_readme_uses_the_variable_names_the_demo_exports(db):
    printed = run_demo()
    exported = set(re.findall(r"export ([A-Z_]+)=", printed))
    assert exported == {"DYNAMIQ_ACCESS_KEY"}
    readme = README.read_text()
    try_it = readme[readme.index("## Try it"):readme.index("## Configuration")]
    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", try_it)) | set(re.findall(r"export ([A-Z_]+)=", try_it))
    assert used == exported
    assert "$DYNAMIQ_ACCESS_KEY" in printed
    # The one other place the README sets a key from the command line uses the same name.
    assert "DYNAMIQ_ACCESS_KEY=$(python manage.py create_access_key" in readme
