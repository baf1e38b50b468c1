"""`manage.py recover_runs`: queue the runs left `created` (or `started` by a dead process) and the
callback deliveries still owed.

With the celery executor it publishes them to the broker and returns. With the thread executor it
executes them in this process and waits until they are done (use it when no server process is running;
a server recovers by itself on its first request).
"""

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.runs.dispatch import get_executor
from apps.runs.recovery import recover


class Command(BaseCommand):
    help = "Queue runs left created/started by a crash, and callbacks still owed."

    def handle(self, *args, **options):
        counts = recover()
        self.stdout.write(f"queued {counts['runs']} run(s) and {counts['callbacks']} callback(s) "
                          f"on the {settings.RUNS_EXECUTOR} executor")
        executor = get_executor()
        if executor.name == "thread":
            executor.shutdown(wait=True)
            self.stdout.write("done")
