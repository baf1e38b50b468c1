# The admin world (tests/support/admin.py) for test_admin.py.
from tests.support.admin import operator, operator_client, world  # noqa: F401
