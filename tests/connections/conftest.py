# The admin world (tests/support/admin.py) for test_admin.py, and the stored-secrets world of tests/core for
# test_key_rotation.py (the rotation command lives here; the encrypted fields it rotates are core's).
from tests.core.conftest import stored_secrets  # noqa: F401
from tests.support.admin import operator, operator_client, world  # noqa: F401
