"""`manage.py purge_files`: delete uploaded files no run references, older than
UNREFERENCED_FILE_RETENTION_HOURS (rows and stored bytes). Meant to run on a schedule."""

from django.core.management.base import BaseCommand

from apps.runs.files import files_purge_unreferenced


class Command(BaseCommand):
    help = "Delete uploaded files that no run references, older than UNREFERENCED_FILE_RETENTION_HOURS."

    def handle(self, *args, **options):
        count = files_purge_unreferenced()
        self.stdout.write(f"Purged {count} unreferenced file(s).")
