"""EncryptedJSONField: a JSON value stored as one Fernet token.

Why our own field: django-fernet-fields 0.6 does not import on Django 5.2 (`force_text`) and fails
to save on psycopg 3; django-fernet-encrypted-fields returns ciphertext silently when the key is
wrong. This one fails closed (DecryptionError) and refuses lookups, since ciphertext is not queryable.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldError
from django.db import models

from .crypto import decrypt_json, encrypt_json

# The encrypted fields of the project's real models (what rotate_fernet_keys and the startup check walk).
ENCRYPTED_FIELDS: list[models.Field] = []


class EncryptedJSONField(models.TextField):
    description = "JSON value encrypted at rest with Fernet"

    def contribute_to_class(self, cls, name, private_only=False):
        super().contribute_to_class(cls, name, private_only=private_only)
        # Migrations render historical models (module "__fake__", e.g. `NewApp` while SQLite remakes a
        # table) that call this too: registering them would grow the list on every migrate and point
        # the startup check and rotate_fernet_keys at tables that do not exist.
        if cls._meta.abstract or cls.__module__ == "__fake__":
            return
        if not any(f.model._meta.label == cls._meta.label and f.name == name for f in ENCRYPTED_FIELDS):
            ENCRYPTED_FIELDS.append(self)

    def from_db_value(self, value: str | None, expression, connection) -> Any:
        if value is None:
            return None
        return decrypt_json(value)

    def to_python(self, value: Any) -> Any:
        # Form/deserialization input is already the plain value; never try to decrypt it here.
        return value

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return encrypt_json(value)

    def value_to_string(self, obj) -> str:
        # dumpdata/serializers must not write plaintext secrets out.
        raise FieldError("encrypted fields are not serializable")

    def get_lookup(self, lookup_name: str):
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        raise FieldError(f"EncryptedJSONField does not support '{lookup_name}' lookups: ciphertext is not queryable")

    def get_transform(self, name: str):
        raise FieldError("EncryptedJSONField does not support transforms")
