"""`manage.py demo`: seed a working, offline demo (idempotent; each run prints a new access key).

Seeds organization and project "Demo", a development superuser admin/admin (only if missing), a shared
`http_api_key` connection to the built-in demo upstream (/demo-upstream/, served in DEBUG), a workflow
"Invoice summary" with an end-user requirement "billing" and two versions (v1: the caller's invoices; v2: shared
+ the caller's), a private App "Invoice bot" that deployed v1 then v2 (so there is something to roll back to),
and end-user links for user-42 and user-43 with different demo keys, then prints what to try next.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.accounts.services import access_key_create, project_get_or_create
from apps.connect.models import EndUserLink
from apps.connect.services import end_user_connection_save
from apps.connections.models import Connection
from apps.connections.services import connection_create
from apps.deployments.models import App
from apps.deployments.services import app_create, app_update, deploy
from apps.workflows.models import Requirement, Workflow
from apps.workflows.services import requirement_create, workflow_create, workflow_version_create

ORGANIZATION = PROJECT = "Demo"
SHARED_CONNECTION = "demo-billing-shared"
WORKFLOW = "Invoice summary"
APP = "Invoice bot"
DEMO_USERS = ("user-42", "user-43")
ACTOR = "cli:demo"


def demo_definition_v1(*, upstream: str, requirement: Requirement) -> dict:
    """Version 1: the caller's own invoices only. Deployed before version 2, so the App's history has an
    earlier version to roll back to (the admin's rollback, POST /v1/apps/{id}/rollback)."""
    return {
        "nodes": [
            {"id": "input", "type": "input", "fields": {"question": {"type": "string", "required": True}}},
            {"id": "my_invoices", "type": "http", "depends_on": ["input"],
             "connection": {"requirement": str(requirement.id)},
             "config": {"method": "GET", "url": f"{upstream}/invoices", "params": {"q": "{{ input.question }}"}}},
            {"id": "output", "type": "output", "depends_on": ["my_invoices"],
             "fields": {
                 "summary": "Your account {{ nodes.my_invoices.output.body.account }} has "
                            "{{ nodes.my_invoices.output.body.invoices | length }} invoices.",
                 "my_account": "{{ nodes.my_invoices.output.body.account }}",
                 "my_invoices": "{{ nodes.my_invoices.output.body.invoices }}",
             }},
        ]
    }


def demo_definition(*, upstream: str, shared: Connection, requirement: Requirement) -> dict:
    invoices_url = f"{upstream}/invoices"
    query = {"q": "{{ input.question }}"}
    return {
        "nodes": [
            {"id": "input", "type": "input", "fields": {"question": {"type": "string", "required": True}}},
            {"id": "shared_invoices", "type": "http", "depends_on": ["input"],
             "connection": {"id": str(shared.id)},
             "config": {"method": "GET", "url": invoices_url, "params": query}},
            {"id": "my_invoices", "type": "http", "depends_on": ["input"],
             "connection": {"requirement": str(requirement.id)},
             "config": {"method": "GET", "url": invoices_url, "params": query}},
            {"id": "summary", "type": "template", "depends_on": ["shared_invoices", "my_invoices"],
             "config": {"template": (
                 "Question: {{ input.question }}. Shared account {{ nodes.shared_invoices.output.body.account }} has "
                 "{{ nodes.shared_invoices.output.body.invoices | length }} invoices; your account "
                 "{{ nodes.my_invoices.output.body.account }} has {{ nodes.my_invoices.output.body.invoices | length }}."
             )}},
            {"id": "output", "type": "output", "depends_on": ["summary"],
             "fields": {
                 "summary": "{{ nodes.summary.output.text }}",
                 "shared_account": "{{ nodes.shared_invoices.output.body.account }}",
                 "my_account": "{{ nodes.my_invoices.output.body.account }}",
                 "my_invoices": "{{ nodes.my_invoices.output.body.invoices }}",
             }},
        ]
    }


class Command(BaseCommand):
    help = "Seed a demo organization, project, connections, workflow, deployed App and end-user links."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            # The demo creates the superuser admin/admin and public demo keys: never in a production database.
            raise CommandError("The demo is for development only: it creates the superuser admin/admin. "
                               "It refuses to run with DEBUG=false (this database may be a production one).")
        with transaction.atomic():
            seeded = self._seed()
        self._print_guide(**seeded)

    def _seed(self) -> dict:
        notes: list[str] = []
        project = project_get_or_create(organization_name=ORGANIZATION, project_name=PROJECT)

        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", "admin")
            notes.append("Created superuser admin / admin (a DEVELOPMENT credential: never use it in production).")
        else:
            notes.append("Superuser 'admin' already exists (left unchanged).")

        _, raw_key = access_key_create(organization=project.organization, project=project, name="demo", actor=ACTOR)

        upstream = f"{settings.PLATFORM_URL}/demo-upstream"
        shared = Connection.objects.filter(project=project, name=SHARED_CONNECTION, app__isnull=True).first()
        if shared is None:
            shared = connection_create(
                project=project, name=SHARED_CONNECTION, type="http_api_key", actor=ACTOR,
                config={"url": upstream, "api_key": "demo-shared-" + secrets.token_hex(12)},
            )

        workflow = Workflow.objects.filter(project=project, name=WORKFLOW).first() or workflow_create(
            project=project, name=WORKFLOW, description="Summarizes invoices from a shared account and the caller's own."
        )
        requirement = Requirement.objects.filter(workflow=workflow, name="billing").first() or requirement_create(
            workflow=workflow, name="billing", title="Your billing account",
            description="An API key for your account at the demo billing API.",
            spec={"connection_type": "http_api_key"},
        )

        first = workflow.versions.order_by("number").first()
        if first is None:
            first = workflow_version_create(workflow=workflow, actor=ACTOR,
                                            definition=demo_definition_v1(upstream=upstream, requirement=requirement),
                                            description="Demo v1: your own invoices")
        definition = demo_definition(upstream=upstream, shared=shared, requirement=requirement)
        version = workflow.versions.order_by("-number").first()
        if version.definition != definition:
            version = workflow_version_create(workflow=workflow, definition=definition,
                                              description="Demo v2: shared + end-user invoices", actor=ACTOR)

        app = App.objects.filter(project=project, name=APP).first() or app_create(
            project=project, name=APP, access_type=App.AccessType.PRIVATE, mcp_enabled=True,
        )
        if not app.mcp_enabled:  # a database seeded before SPEC 14
            app = app_update(app=app, mcp_enabled=True, actor=ACTOR)
        if app.current_deployment is None:
            deploy(app=app, version=first, actor=ACTOR)  # history: v1, then v2 (something to roll back to)
        if app.current_deployment.workflow_version_id != version.id:
            deploy(app=app, version=version, actor=ACTOR)

        for user_id in DEMO_USERS:
            if not EndUserLink.objects.filter(app=app, user_id=user_id, requirement=requirement).exists():
                end_user_connection_save(
                    app=app, user_id=user_id, requirement=requirement, type="http_api_key",
                    config={"url": upstream, "api_key": f"demo-{user_id}-" + secrets.token_hex(8)},
                )
        return {"notes": notes, "raw_key": raw_key, "app": app}

    def _print_guide(self, *, notes: list[str], raw_key: str, app: App) -> None:
        platform = urlsplit(settings.PLATFORM_URL)
        port = f":{platform.port}" if platform.port else ""
        app_base = f"{platform.scheme}://{app.hostname}{port}"
        path_base = f"{settings.PLATFORM_URL}/apps/{app.id}"
        out = self.stdout.write
        for note in notes:
            out(note)
        if not settings.DEMO_UPSTREAM_ENABLED:
            out("WARNING: DEMO_UPSTREAM_ENABLED is off, so /demo-upstream/ is not served and demo runs will fail.")
        out("")
        out("Demo access key (shown once; each `manage.py demo` run creates a new one):")
        out(f"  {raw_key}")
        out("")
        out(f"App “{app.name}” (private, needs the key):")
        out(f"  {app_base}/            (*.localhost resolves to loopback)")
        out(f"  {path_base}/   (same API without wildcard DNS)")
        out("")
        out("Try the seed page's own examples (paste them as they are):")
        out(f'  export DYNAMIQ_ACCESS_KEY="{raw_key}"')
        out("")
        out("  # Which requirements has this user satisfied?")
        out(f'  curl "{app_base}/v1/requirements/status?user_id=user-42" \\')
        out('    -H "Authorization: Bearer $DYNAMIQ_ACCESS_KEY"')
        out("")
        out("  # Run as user-42, then as user-43: the same version against two different accounts")
        for user_id in DEMO_USERS:
            out(f'  curl -X POST "{app_base}/v1/runs" \\')
            out('    -H "Content-Type: application/json" \\')
            out('    -H "Authorization: Bearer $DYNAMIQ_ACCESS_KEY" \\')
            out(f'    -d \'{{"input": {{"question": "Summarize my latest invoices"}}, "user_id": "{user_id}"}}\'')
        out("")
        out("  # A user who has not linked an account yet (requirements_unsatisfied), and a connect link for them:")
        out(
            f'  curl -X POST "{app_base}/v1/runs" -H "Content-Type: application/json" '
            f'-H "Authorization: Bearer $DYNAMIQ_ACCESS_KEY" '
            f"-d '{{\"input\": {{\"question\": \"unpaid\"}}, \"user_id\": \"user-99\"}}'"
        )
        out(
            f'  curl -X POST "{app_base}/v1/connect/tokens" -H "Content-Type: application/json" '
            f'-H "Authorization: Bearer $DYNAMIQ_ACCESS_KEY" -d \'{{"user_id": "user-99"}}\''
        )
        out("")
        out("  # The authenticated proxy (SPEC 14): the billing API as user-42, without holding user-42's key")
        out(f'  curl "{app_base}/v1/proxy/billing/invoices?user_id=user-42" -H "Authorization: Bearer $DYNAMIQ_ACCESS_KEY"')
        out("  # MCP (SPEC 14): a session token for user-42; an MCP client then POSTs to the url it names")
        out(
            f'  curl -X POST "{app_base}/v1/mcp/sessions" -H "Content-Type: application/json" '
            f'-H "Authorization: Bearer $DYNAMIQ_ACCESS_KEY" -d \'{{"user_id": "user-42"}}\''
        )
        out("")
        # Python's resolver (unlike curl's) may not map *.localhost to loopback: give it the path form.
        out(f'  # The seed\'s Python snippet works as written with endpoint = "{path_base}"')
        out("  # Without wildcard DNS, replace the App URL with:")
        out(f"  #   {path_base}")
        out("")
        out(f"Admin: {settings.PLATFORM_URL}/admin/ (admin / admin)")
        out(f"  The App deployed v1, then v2: roll back on its admin page, or POST {settings.PLATFORM_URL}/v1/apps/"
            f"{app.id}/rollback with the key.")
