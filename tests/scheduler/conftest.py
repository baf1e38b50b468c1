from tests.runs.conftest import _sqlite_template, shared_db  # noqa: F401  (threads and processes share one database)
