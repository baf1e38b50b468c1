"""Production settings: refuse to start on development values; `check --deploy` clean with real ones.

Each case runs a fresh Python process (settings are read once, at import).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parents[2]
SETUP = "import django; django.setup()"
PRODUCTION_VARS = ("SECRET_KEY", "FERNET_KEYS", "CREDENTIALS_API_TOKEN")


# Only what a process needs to run: nothing the test run itself sets (DATABASE_URL, DEBUG,
# DJANGO_ALLOW_ASYNC_UNSAFE from the browser tests...) leaks into the settings under test.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV")


def _env(**overrides: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in PASSED_THROUGH}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)


def _production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    values = {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "FERNET_KEYS": f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}",
        "CREDENTIALS_API_TOKEN": secrets.token_urlsafe(40),
        "PLATFORM_URL": "https://platform.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    return _env(**{**values, **overrides})


@pytest.mark.skipif((BASE_DIR / ".env").exists(), reason="a local .env supplies the values this test leaves unset")
def test_debug_off_without_keys_refuses_to_start():
    result = _run([sys.executable, "-c", SETUP], _env(DEBUG="false"))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    for name in PRODUCTION_VARS:
        assert name in result.stderr


def test_debug_off_with_blank_keys_refuses_to_start():
    # Blank values take precedence over any .env (django-environ does not overwrite the environment).
    result = _run([sys.executable, "-c", SETUP], _env(DEBUG="false", SECRET_KEY="", FERNET_KEYS="", CREDENTIALS_API_TOKEN=""))
    assert result.returncode != 0
    for name in PRODUCTION_VARS:
        assert name in result.stderr


def test_debug_off_with_the_public_development_fernet_key_refuses_to_start(tmp_path):
    from config import settings as product_settings

    dev_keys = f"{Fernet.generate_key().decode()},{product_settings._DEV_FERNET_KEY}"
    result = _run([sys.executable, "-c", SETUP], _production_env(tmp_path, FERNET_KEYS=dev_keys))
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "FERNET_KEYS" in message
    assert "SECRET_KEY" not in message and "CREDENTIALS_API_TOKEN" not in message


def test_debug_off_with_a_short_secret_key_names_only_that_setting(tmp_path):
    result = _run([sys.executable, "-c", SETUP], _production_env(tmp_path, SECRET_KEY="too-short"))
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "SECRET_KEY" in message
    assert "FERNET_KEYS" not in message and "CREDENTIALS_API_TOKEN" not in message


def test_debug_off_with_real_values_starts(tmp_path):
    result = _run([sys.executable, "-c", SETUP + "; from django.conf import settings; print(settings.DEBUG)"],
                  _production_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_check_deploy_finds_no_settings_issue_for_a_production_like_environment(tmp_path):
    # The settings half of the check below: security.*, core.*, staticfiles... everything but the
    # OpenAPI schema warnings drf-spectacular adds for views that lack schema annotations.
    result = _run([sys.executable, "manage.py", "check", "--deploy"], _production_env(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    issues = [line for line in output.splitlines() if re.match(r"^\S+: \([\w.]+\.[A-Z]\d+\)", line)]
    assert [line for line in issues if "(drf_spectacular." not in line] == []


def test_check_deploy_is_clean_for_a_production_like_environment(tmp_path):
    result = _run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], _production_env(tmp_path)
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNINGS:" not in output and "ERRORS:" not in output
    assert "System check identified no issues" in output


def _env_example() -> dict[str, str]:
    values = {}
    for line in (BASE_DIR / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def test_env_example_is_a_working_development_environment(tmp_path):
    """`cp .env.example .env` must not break `make run`: the values it sets start a development process
    (DEBUG on, SQLite, the demo upstream) and pass `check`; the production values are there, commented."""
    values = _env_example()
    assert values["DEBUG"] == "true"
    assert not set(values) & {"SECRET_KEY", "FERNET_KEYS", "CREDENTIALS_API_TOKEN", "DATABASE_URL"}
    env = _env(**values)
    script = (f"{SETUP}; from django.conf import settings as s; "
              "print(s.DEBUG, s.DATABASES['default']['ENGINE'], s.DEMO_UPSTREAM_ENABLED, s.PLATFORM_URL)")
    result = _run([sys.executable, "-c", script], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "django.db.backends.sqlite3", "True", "http://localhost:8000"]
    check = _run([sys.executable, "manage.py", "check"], env)
    assert check.returncode == 0, check.stderr
    commented = (BASE_DIR / ".env.example").read_text()
    for name in ("DEBUG=false", "SECRET_KEY=", "FERNET_KEYS=", "CREDENTIALS_API_TOKEN=", "DATABASE_URL=postgres"):
        assert f"# {name}" in commented


POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"  # only connected to, never written
SHOW_DATABASE = (
    SETUP + "; from django.db import connection as c; from django.conf import settings as s;"
    " d = s.DATABASES['default']; c.ensure_connection();"
    " print(d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'], sorted(d['OPTIONS']), c.pool is not None,"
    " c.cursor().connection.prepare_threshold)"
)


def _database_settings(**overrides: str) -> str:
    result = _run([sys.executable, "-c", SHOW_DATABASE], _env(DATABASE_URL=POSTGRES_URL, **overrides))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_postgres_defaults_are_persistent_health_checked_connections_with_prepared_statements_and_no_pool():
    assert _database_settings() == "60 True ['prepare_threshold', 'server_side_binding'] False 5"


def test_postgres_pool_health_checks_and_prepared_statements_are_settings():
    # DATABASE_POOL: Django's psycopg pool (it requires CONN_MAX_AGE=0), used for the real connection.
    assert _database_settings(DATABASE_POOL="true", CONN_HEALTH_CHECKS="false") == (
        "0 False ['pool', 'prepare_threshold', 'server_side_binding'] True 5")
    assert _database_settings(DATABASE_PREPARE_THRESHOLD="20") == (
        "60 True ['prepare_threshold', 'server_side_binding'] False 20")
    # Empty: Django's client-side binding, which never prepares (a PgBouncer before 1.21 in transaction mode).
    assert _database_settings(DATABASE_PREPARE_THRESHOLD="") == "60 True [] False None"
