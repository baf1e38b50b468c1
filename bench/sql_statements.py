"""SQL statements of one sync run on a warm worker, counted in process with CaptureQueriesContext.

Usage: python bench/sql_statements.py APP_ID ACCESS_KEY [-v]
Runs against the database and settings of the environment (DATABASE_URL etc., as bench/run.sh sets them)
and the benchmark App seeded there. Three warm-up runs first (the access key's `last_used_at` write happens
at most once a minute), then one measured run. Transaction control (BEGIN, COMMIT, SAVEPOINT, RELEASE,
ROLLBACK) is not counted (SPEC 11); neither is the health check's `SELECT 1` (run on the raw connection,
outside Django's cursor wrapper). Prints the count; -v prints the statements to stderr too.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

TRANSACTION_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)


def main() -> None:
    app_id, access_key = sys.argv[1], sys.argv[2]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {access_key}")

    def run():
        response = client.post(f"/apps/{app_id}/v1/runs", {"input": {}}, content_type="application/json")
        if response.status_code != 200 or response.json().get("status") != "completed":
            raise SystemExit(f"the run did not complete: {response.status_code} {response.content[:300]!r}")

    for _ in range(3):
        run()
    with CaptureQueriesContext(connection) as captured:
        run()
    statements = [q["sql"] for q in captured.captured_queries if not TRANSACTION_CONTROL.match(q["sql"])]
    if "-v" in sys.argv:
        for sql in statements:
            print(sql[:300], file=sys.stderr)
    print(len(statements))


if __name__ == "__main__":
    main()
