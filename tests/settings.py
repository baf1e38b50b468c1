"""Test settings: the product's settings plus test-only apps (e.g. a real OAuth2 provider).

Every test session owns its state, so two suites on one machine never collide: its own PostgreSQL
database, and its own Celery queue and Redis key prefix (inherited by the Celery workers it starts, which
load these settings too, through RCP_TEST_SESSION).
"""

import os as _os
import secrets as _secrets

from config.settings import *  # noqa: F403
from config.settings import CELERY_BROKER_TRANSPORT_OPTIONS, INSTALLED_APPS

TEST_SESSION = _os.environ.setdefault("RCP_TEST_SESSION", f"{_os.getpid()}-{_secrets.token_hex(4)}")
if _os.environ.get("PYTEST_XDIST_WORKER"):
    TEST_SESSION = f"{TEST_SESSION}-{_os.environ['PYTEST_XDIST_WORKER']}"
CELERY_TASK_DEFAULT_QUEUE = f"rcp-test-{TEST_SESSION}"
CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, "global_keyprefix": f"rcp-test-{TEST_SESSION}:"}

# The cache (rate-limit counters): the product's embedded default in a file of this session's own, or the
# configured one (CACHE_URL, e.g. Redis) under this session's key prefix. tests/conftest.py empties the
# SQLite one before each test; a Redis cache is never flushed (tests delete the keys they made).
if CACHES["default"]["BACKEND"] == "apps.core.cache.SQLiteCache":  # noqa: F405
    import tempfile as _tempfile

    CACHES["default"]["LOCATION"] = _os.path.join(_tempfile.gettempdir(), f"rcp-test-cache-{TEST_SESSION}.sqlite3")  # noqa: F405
    # Processes a test starts with this environment (gunicorn, Celery workers) count in the same file.
    _os.environ.setdefault("CACHE_SQLITE_PATH", CACHES["default"]["LOCATION"])  # noqa: F405
CACHES["default"]["KEY_PREFIX"] = f"rcp-test-{TEST_SESSION}"  # noqa: F405

INSTALLED_APPS = [*INSTALLED_APPS, "oauth2_provider", "tests.oauth_provider"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users

# A real OAuth2 authorization server (django-oauth-toolkit) for the connect flow tests, served by the
# same test server under /o/ (tests/urls.py = the platform URLconf + the provider's URLs).
ROOT_URLCONF = "tests.urls"
OAUTH2_PROVIDER = {"PKCE_REQUIRED": True}
LOGIN_URL = "/o/login/"

# SQLite: test against a file (per process, so parallel runs and xdist workers never share one), not
# the default shared-cache in-memory database. In-memory shared cache locks whole tables and ignores the
# busy timeout ("database table is locked" at once), so concurrent writers (50 runs refreshing one
# token, live-server threads) could not be tested there; a file has the production behaviour: WAL,
# IMMEDIATE write transactions that queue on the busy timeout.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    import tempfile as _tempfile

    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": _os.path.join(_tempfile.gettempdir(), f"rcp-test-{_os.getpid()}.sqlite3"),
    }

else:
    # PostgreSQL: a database of this test session's own (pytest-django would otherwise use `test_<name>`
    # for every suite on the machine, and two suites would drop each other's database).
    DATABASES["default"]["TEST"] = {"NAME": f"test_rcp_{_os.getpid()}"}  # noqa: F405

# Tests never run collectstatic: let WhiteNoise serve from the app finders (Swagger UI's local assets).
WHITENOISE_USE_FINDERS = True
