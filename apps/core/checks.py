"""Startup checks. `verify_stored_secrets` fails closed when stored secrets cannot be decrypted with
FERNET_KEYS: better to refuse to start than to serve runs that fail one by one, or to overwrite
rows with a key that cannot read them."""

from __future__ import annotations

import logging

from cryptography.fernet import Fernet
from django.conf import settings
from django.core import checks
from django.db import DatabaseError, connections

from .crypto import DecryptionError, decrypt_json
from .fields import ENCRYPTED_FIELDS  # filled as models load; read only when a check runs

logger = logging.getLogger(__name__)

SAMPLE_ROWS = 200


def _not_checked(exc: DatabaseError) -> str:
    # The exception type only: a database error's message can quote query data.
    return (f"Stored secrets were not checked against FERNET_KEYS: the database is unavailable ({type(exc).__name__}). "
            "/readyz checks a sample once it is reachable.")


def undecryptable_rows(*, sample: int | None = SAMPLE_ROWS) -> list[str]:
    """Return `app.Model.field#pk` for stored tokens no configured key opens (newest `sample` per field)."""

    bad: list[str] = []
    for field in ENCRYPTED_FIELDS:
        model = field.model
        table = model._meta.db_table
        pk = model._meta.pk.column
        if table not in connections["default"].introspection.table_names():
            continue
        sql = f'SELECT "{pk}", "{field.column}" FROM "{table}" WHERE "{field.column}" IS NOT NULL'
        if sample:
            order = "created_at" if any(f.name == "created_at" for f in model._meta.fields) else pk
            sql += f' ORDER BY "{order}" DESC LIMIT {int(sample)}'
        with connections["default"].cursor() as cursor:
            cursor.execute(sql)
            for row_pk, token in cursor.fetchall():
                try:
                    decrypt_json(token)
                except DecryptionError:
                    # to_python: SQLite hands UUIDs back as 32 hex digits; show the ID as the app does.
                    bad.append(f"{model._meta.label}.{field.name}#{model._meta.pk.to_python(row_pk)}")
    return bad


def verify_stored_secrets() -> None:
    """Raise DecryptionError when any sampled secret cannot be decrypted (used at WSGI start)."""
    try:
        bad = undecryptable_rows()
    except DatabaseError as exc:
        # Before migrate the tables are simply missing (undecryptable_rows skips them); an error here means
        # the database cannot be read. Start anyway (requests answer 503 until it is back) but say so.
        logger.warning("%s", _not_checked(exc))
        return
    if bad:
        raise DecryptionError(
            f"{len(bad)} stored secret(s) cannot be decrypted with FERNET_KEYS (first: {bad[0]}). "
            "Put the old key back in FERNET_KEYS, or run rotate_fernet_keys with both keys."
        )


def invalid_fernet_keys() -> list[str]:
    """Problems with the FERNET_KEYS setting itself, naming positions only (never a key)."""
    keys = list(getattr(settings, "FERNET_KEYS", None) or [])
    if not keys:
        return ["FERNET_KEYS is empty."]
    problems = []
    for index, key in enumerate(keys):
        try:
            Fernet(key.encode() if isinstance(key, str) else key)
        except (ValueError, TypeError):
            problems.append(f"FERNET_KEYS entry {index + 1} of {len(keys)} is not a valid Fernet key.")
    return problems


@checks.register(checks.Tags.security)
def fernet_keys_valid(app_configs=None, **kwargs):
    return [
        checks.Error(problem, hint="Each key is the urlsafe base64 of 32 bytes, as Fernet.generate_key() makes.",
                     id="core.E002")
        for problem in invalid_fernet_keys()
    ]


@checks.register(checks.Tags.security, checks.Tags.database)
def fernet_keys_open_stored_secrets(app_configs=None, databases=None, **kwargs):
    # Runs on every management command (runserver, migrate, check), not only with --database:
    # starting with keys that cannot read the stored secrets must fail at once.
    if invalid_fernet_keys():
        return []  # reported by core.E002; no key list to try
    try:
        bad = undecryptable_rows()
    except DatabaseError as exc:
        return [checks.Warning(_not_checked(exc), id="core.W001")]
    if not bad:
        return []
    return [
        checks.Error(
            f"{len(bad)} stored secret(s) cannot be decrypted with FERNET_KEYS (first: {bad[0]}).",
            hint="Put the previous key back in FERNET_KEYS (after the new one) and run rotate_fernet_keys.",
            id="core.E001",
        )
    ]
