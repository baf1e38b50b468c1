"""Seed the benchmark App: input -> one HTTP node with a stored credential -> output.
Prints `<app_id> <access_key>`. Run with the bench's DATABASE_URL.
Usage: seed_bench.py UPSTREAM_URL KEY [NAME=bench] (a second App on the same database needs its own NAME)."""

import os
import sys

import django

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from apps.accounts.services import access_key_create, project_get_or_create  # noqa: E402
from apps.connections.services import connection_create  # noqa: E402
from apps.deployments.services import app_create, deploy  # noqa: E402
from apps.workflows.services import workflow_create, workflow_version_create  # noqa: E402

upstream, key = sys.argv[1], sys.argv[2]
name = sys.argv[3] if len(sys.argv) > 3 else "bench"
project = project_get_or_create(organization_name="Bench", project_name="Bench")
connection = connection_create(project=project, name=f"{name}-upstream", type="http_api_key",
                               config={"url": upstream, "api_key": key})
workflow = workflow_create(project=project, name=f"{name}-webhook-http-respond")
version = workflow_version_create(workflow=workflow, definition={"nodes": [
    {"id": "input", "type": "input", "fields": {}},
    {"id": "call", "type": "http", "depends_on": ["input"], "connection": {"id": str(connection.id)},
     "config": {"method": "GET", "url": upstream}},
    {"id": "output", "type": "output", "depends_on": ["call"], "fields": {"result": "{{ nodes.call.output.body }}"}},
]})
app = app_create(project=project, name=name)
deploy(app=app, version=version)
_, raw = access_key_create(organization=project.organization, project=project, name=name)
print(app.id, raw)
