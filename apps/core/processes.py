"""What kind of process this is, for work that belongs only in long-running server processes (run
recovery on start, the scheduler thread): never in migrate, tests, shell or any other management command."""

from __future__ import annotations

import os


def is_server_command(argv: list[str]) -> bool:
    """`manage.py runserver` (both the autoreloader's watcher and its serving child match: callers act on the
    first request, which only the child receives) or gunicorn."""
    if not argv:
        return False
    program = os.path.basename(argv[0])
    if argv[1:2] == ["runserver"] and program in ("manage.py", "django-admin", "__main__.py"):
        return True
    return program == "gunicorn" or argv[0].endswith(os.path.join("gunicorn", "__main__.py"))
