"""Key rotation: FERNET_KEYS=[new, old] reads both, `rotate_fernet_keys` moves every row to the new key,
and a key that opens nothing fails closed everywhere (reads, the startup check, the command)."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.connections.models import Connection
from apps.core.checks import undecryptable_rows, verify_stored_secrets
from apps.core.crypto import DecryptionError
from apps.core.fields import ENCRYPTED_FIELDS
from tests.core.conftest import EXPECTED_ENCRYPTED_FIELDS, field_label, read_all_encrypted
from tests.core.rawsql import raw_column

pytestmark = pytest.mark.django_db

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
KEY_C = Fernet.generate_key().decode()


def raw_tokens() -> dict[tuple[str, str], str]:
    tokens = {}
    for f in ENCRYPTED_FIELDS:
        for pk, token in raw_column(f.model, f.name).items():
            if token is not None:
                tokens[(field_label(f), pk)] = token
    return tokens


def opens_with(key: str, token: str) -> bool:
    try:
        Fernet(key).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def rotate(**options) -> str:
    out = io.StringIO()
    call_command("rotate_fernet_keys", stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def e001(messages) -> list:
    return [m for m in messages if m.id == "core.E001"]


@pytest.fixture
def written_with_a(settings, project, canaries, request):
    settings.FERNET_KEYS = [KEY_A]
    secrets = request.getfixturevalue("stored_secrets")
    values = read_all_encrypted()
    assert all(opens_with(KEY_A, t) for t in raw_tokens().values())
    return secrets, values


def test_rows_written_with_a_read_with_b_then_a(written_with_a, settings):
    _, values = written_with_a
    settings.FERNET_KEYS = [KEY_B, KEY_A]
    assert read_all_encrypted() == values
    assert not e001(run_checks())
    verify_stored_secrets()  # does not raise


def test_new_writes_use_the_first_key(written_with_a, settings, project):
    settings.FERNET_KEYS = [KEY_B, KEY_A]
    conn = Connection.objects.create(project=project, name="fresh", type="http", config={"url": "https://x.example.com"})
    token = raw_column(Connection, "config")[str(conn.pk)]
    assert opens_with(KEY_B, token) and not opens_with(KEY_A, token)


def test_rotate_moves_every_row_to_the_first_key(written_with_a, settings):
    secrets, values = written_with_a
    settings.FERNET_KEYS = [KEY_B, KEY_A]
    before = raw_tokens()
    output = rotate()

    after = raw_tokens()
    assert after.keys() == before.keys()
    assert all(opens_with(KEY_B, t) and not opens_with(KEY_A, t) for t in after.values())
    # Counts per field, never a value.
    for label in EXPECTED_ENCRYPTED_FIELDS:
        rows = sum(1 for (lbl, _) in before if lbl == label)
        assert f"{label}: {rows} rotated, 0 already on the first key" in output
    assert f"Done: {len(before)} secret(s) re-encrypted" in output
    assert not [name for name, value in secrets.secrets.items() if value in output]
    assert "gAAAAA" not in output

    settings.FERNET_KEYS = [KEY_B]  # the old key can now be dropped
    assert read_all_encrypted() == values
    assert not e001(run_checks())


def test_rotate_is_idempotent(written_with_a, settings):
    _, values = written_with_a
    settings.FERNET_KEYS = [KEY_B, KEY_A]
    rotate()
    once = raw_tokens()
    output = rotate()
    assert raw_tokens() == once  # nothing rewritten
    assert "Done: 0 secret(s) re-encrypted" in output
    assert "connections.Connection.config: 0 rotated" in output
    settings.FERNET_KEYS = [KEY_B]
    assert read_all_encrypted() == values


def test_rotate_keeps_updated_at_and_history(written_with_a, settings):
    settings.FERNET_KEYS = [KEY_B, KEY_A]
    conn = Connection.objects.get(name="billing-api")
    history = list(conn.config_changes.values_list("pk", "fingerprint"))
    rotate()
    conn_after = Connection.objects.get(pk=conn.pk)
    assert conn_after.updated_at == conn.updated_at
    assert list(conn_after.config_changes.values_list("pk", "fingerprint")) == history


def test_rotate_with_small_batches(written_with_a, settings):
    _, values = written_with_a
    settings.FERNET_KEYS = [KEY_B, KEY_A]
    rotate(batch_size=1)
    assert all(opens_with(KEY_B, t) for t in raw_tokens().values())
    settings.FERNET_KEYS = [KEY_B]
    assert read_all_encrypted() == values


def test_check_option_writes_nothing(written_with_a, settings):
    settings.FERNET_KEYS = [KEY_B, KEY_A]
    before = raw_tokens()
    output = rotate(check=True)
    assert "All stored secrets can be decrypted" in output
    assert raw_tokens() == before


class TestWrongKey:
    def test_reading_raises_never_ciphertext_or_empty(self, written_with_a, settings):
        settings.FERNET_KEYS = [KEY_C]
        with pytest.raises(DecryptionError):
            Connection.objects.get(name="billing-api")
        with pytest.raises(DecryptionError):
            list(Connection.objects.values_list("config", flat=True))
        with pytest.raises(DecryptionError):
            read_all_encrypted()

    def test_the_startup_check_fails(self, written_with_a, settings):
        settings.FERNET_KEYS = [KEY_C]
        with pytest.raises(DecryptionError, match="cannot be decrypted"):
            verify_stored_secrets()
        errors = e001(run_checks())
        assert len(errors) == 1 and errors[0].is_serious()
        assert "cannot be decrypted with FERNET_KEYS" in errors[0].msg
        assert len(undecryptable_rows()) == len(raw_tokens())

    def test_rotate_refuses_and_writes_nothing(self, written_with_a, settings):
        settings.FERNET_KEYS = [KEY_C]
        before = raw_tokens()
        with pytest.raises(CommandError) as excinfo:
            rotate()
        assert raw_tokens() == before
        message = str(excinfo.value)
        assert "Nothing was re-encrypted" in message
        for label, pk in before:
            assert label in message and pk in message  # every unreadable row is listed
        assert "gAAAAA" not in message

    def test_one_unreadable_row_stops_the_whole_rotation(self, written_with_a, settings, project):
        # A row written with a key that is no longer configured: nothing may be rewritten anywhere.
        settings.FERNET_KEYS = [KEY_C]
        stray = Connection.objects.create(project=project, name="stray", type="http", config={"url": "https://s.example.com"})
        settings.FERNET_KEYS = [KEY_B, KEY_A]
        before = raw_tokens()
        with pytest.raises(CommandError) as excinfo:
            rotate()
        assert raw_tokens() == before
        assert f"connections.Connection.config: 1 row(s): {stray.pk}" in str(excinfo.value)
        assert e001(run_checks())

        settings.FERNET_KEYS = [KEY_B, KEY_A, KEY_C]  # with the missing key back, rotation succeeds
        rotate()
        assert all(opens_with(KEY_B, t) for t in raw_tokens().values())
        settings.FERNET_KEYS = [KEY_B]
        assert Connection.objects.get(pk=stray.pk).config == {"url": "https://s.example.com"}


def test_the_startup_check_passes_on_an_empty_database(db):
    assert not e001(run_checks())
    verify_stored_secrets()
    assert rotate().endswith("Done: 0 secret(s) re-encrypted with the first key of FERNET_KEYS.\n")


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        (["not-a-fernet-key"], "FERNET_KEYS entry 1 of 1 is not a valid Fernet key."),
        ([KEY_B, "c2hvcnQ="], "FERNET_KEYS entry 2 of 2 is not a valid Fernet key."),
        ([], "FERNET_KEYS is empty."),
    ],
    ids=["first", "second", "empty"],
)
def test_invalid_keys_are_reported_without_the_key(settings, stored_secrets, keys, problem):
    settings.FERNET_KEYS = keys
    with pytest.raises(CommandError) as excinfo:
        rotate()
    assert str(excinfo.value) == problem
    messages = run_checks()
    assert [m.msg for m in messages if m.id == "core.E002"] == [problem]
    assert not e001(messages)  # no key list to try: E002 says why
    for key in keys:
        assert all(key not in str(m) for m in messages)


def test_valid_keys_raise_no_key_error(settings, db):
    settings.FERNET_KEYS = [KEY_B, KEY_A]
    assert not [m for m in run_checks() if m.id == "core.E002"]


@pytest.mark.slow
def test_the_command_line_fails_closed_and_rotates(tmp_path):
    """The whole story in real processes: write with A, refuse to start with C, rotate with [B, A], run with B."""
    import subprocess
    import sys

    from tests.core.test_settings import BASE_DIR, _env

    database = f"sqlite:///{tmp_path / 'db.sqlite3'}"

    def run(keys: list[str], *args: str) -> subprocess.CompletedProcess:
        env = _env(FERNET_KEYS=",".join(keys), DATABASE_URL=database)
        return subprocess.run([sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)

    assert run([KEY_A], "manage.py", "migrate", "--noinput").returncode == 0
    create = (
        "from apps.accounts.services import project_get_or_create;"
        "from apps.connections.services import connection_create;"
        "p = project_get_or_create(organization_name='Acme', project_name='Billing');"
        "c = connection_create(project=p, name='billing', type='http_api_key',"
        " config={'url': 'https://billing.example.com', 'api_key': 'canary-cli-key-55aa'});"
        "print(c.id)"
    )
    created = run([KEY_A], "manage.py", "shell", "-c", create)
    assert created.returncode == 0, created.stderr
    connection_id = created.stdout.strip().splitlines()[-1]

    # A key that opens nothing: the system check, the WSGI start and the command all refuse.
    checked = run([KEY_C], "manage.py", "check")
    assert checked.returncode != 0 and "core.E001" in checked.stderr
    started = run([KEY_C], "-c", "import config.wsgi")
    assert started.returncode != 0 and "DecryptionError" in started.stderr
    refused = run([KEY_C], "manage.py", "rotate_fernet_keys")
    assert refused.returncode == 1
    assert "Nothing was re-encrypted" in refused.stderr and connection_id in refused.stderr

    rotated = run([KEY_B, KEY_A], "manage.py", "rotate_fernet_keys")
    assert rotated.returncode == 0, rotated.stderr
    assert "connections.Connection.config: 1 rotated" in rotated.stdout
    for result in (checked, started, refused, rotated):
        assert "canary-cli-key-55aa" not in result.stdout + result.stderr

    assert run([KEY_B], "manage.py", "check").returncode == 0
    assert run([KEY_B], "-c", "import config.wsgi").returncode == 0
