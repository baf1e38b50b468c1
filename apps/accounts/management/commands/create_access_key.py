"""`manage.py create_access_key --organization ORG --project PROJECT [--org-wide] [--name N]`

Creates the organization and project when missing and prints the new key alone on standard output
(so `KEY=$(python manage.py create_access_key ...)` works); everything else goes to standard error.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.accounts.services import access_key_create, project_get_or_create


class Command(BaseCommand):
    help = "Create an access key (creating the organization and project if missing); prints the key alone on stdout."

    def add_arguments(self, parser):
        parser.add_argument("--organization", required=True, help="Organization name (created if missing).")
        parser.add_argument("--project", required=True, help="Project name (created if missing).")
        parser.add_argument("--org-wide", action="store_true", help="Scope the key to the whole organization.")
        parser.add_argument("--name", default="", help="A label for the key.")

    def handle(self, *args, **options):
        organization_name = options["organization"].strip()
        project_name = options["project"].strip()
        if not organization_name or not project_name:
            raise CommandError("--organization and --project must not be blank.")
        project = project_get_or_create(organization_name=organization_name, project_name=project_name)
        key, raw = access_key_create(
            organization=project.organization, project=None if options["org_wide"] else project,
            name=options["name"] or "", actor="cli:create_access_key",
        )
        scope = f"organization {organization_name!r}" if options["org_wide"] else f"project {project}"
        self.stderr.write(f"Created access key {key.preview} for {scope}. It is shown once, below; store it now.")
        self.stdout.write(raw)
