# The shared-database fixtures of the runs suite: streams and background runs execute in other threads.
from tests.runs.conftest import _sqlite_template, actors, live_url, shared_db, thread_executor  # noqa: F401
