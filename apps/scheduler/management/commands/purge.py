"""`manage.py purge [--dry-run]`: run the retention jobs now, by hand (the scheduler runs them every
RETENTION_EVERY_SECONDS): runs with their events and callback deliveries, unreferenced files with their bytes,
credential-access audit rows, used connect tokens; each older than its period (docs/decisions.md "Retention").
`--dry-run` prints what would be deleted and deletes nothing."""

from django.core.management.base import BaseCommand

from apps.scheduler.registry import JOBS


class Command(BaseCommand):
    help = "Delete runs, files, audit rows and used connect tokens older than their retention periods."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="print the counts, delete nothing")

    def handle(self, *args, dry_run: bool = False, **options):
        verb = "would delete" if dry_run else "deleted"
        for job in JOBS:
            if not job.retention:
                continue
            counts = job.resolve()(dry_run=dry_run)
            self.stdout.write(f"{job.name}: {verb} " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))
