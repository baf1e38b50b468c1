"""What is really stored in every credential column: Fernet tokens, never a secret (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core import serializers
from django.core.exceptions import FieldError
from django.db import connection

from apps.connections.models import Connection, OAuthProvider
from apps.core.crypto import DecryptionError
from apps.core.fields import ENCRYPTED_FIELDS
from apps.runs.models import CallbackDelivery

from .conftest import EXPECTED_ENCRYPTED_FIELDS, field_label, read_all_encrypted
from .rawsql import raw_column, raw_database_text, raw_table_text

pytestmark = pytest.mark.django_db


def _leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return sorted(name for name, value in secrets.items() if value in text)


def test_every_encrypted_field_is_covered():
    # Historical models rendered by migrations must not register (see EncryptedJSONField.contribute_to_class).
    labels = [field_label(f) for f in ENCRYPTED_FIELDS]
    assert sorted(labels) == sorted(EXPECTED_ENCRYPTED_FIELDS)
    assert all(f.model.__module__ != "__fake__" for f in ENCRYPTED_FIELDS)


def test_every_credential_column_holds_only_fernet_tokens(stored_secrets):
    primary = Fernet(settings.FERNET_KEYS[0])
    for f in ENCRYPTED_FIELDS:
        stored = {pk: value for pk, value in raw_column(f.model, f.name).items() if value is not None}
        assert stored, f"no row stored for {field_label(f)}"
        for pk, token in stored.items():
            assert isinstance(token, str) and token.startswith("gAAAAA"), f"{field_label(f)}#{pk} is not a Fernet token"
            plain = json.loads(primary.decrypt(token.encode()))  # a token of the configured key
            assert plain == f.model.objects.values_list(f.name, flat=True).get(pk=pk)
            assert not _leaks(token, stored_secrets.secrets)


def test_no_canary_in_any_raw_row_of_the_credential_tables(stored_secrets):
    for f in ENCRYPTED_FIELDS:
        text = raw_table_text(f.model._meta.db_table)
        assert not _leaks(text, stored_secrets.secrets), f"plaintext secret in {f.model._meta.db_table}"


def test_no_canary_anywhere_in_the_database(stored_secrets):
    # History, versions, deployments, links, runs, callbacks: no table holds a secret in plaintext.
    assert not _leaks(raw_database_text(), stored_secrets.secrets)


def test_the_orm_reads_the_plaintext_back(stored_secrets, canaries):
    objects = stored_secrets.objects
    assert Connection.objects.get(pk=objects["api"].pk).config["api_key"] == canaries["shared_api_key"]
    assert Connection.objects.get(pk=objects["pg"].pk).config["password"] == canaries["pg_password"]
    headers = Connection.objects.get(pk=objects["http"].pk).config["headers"]
    assert headers == {"Authorization": f"Bearer {canaries['header_secret']}"}
    assert OAuthProvider.objects.get(pk=objects["provider"].pk).client_secret == canaries["client_secret"]
    assert CallbackDelivery.objects.get().auth == {"type": "bearer", "token": canaries["access_token"]}
    values = read_all_encrypted()
    assert {label for label, _ in values} == EXPECTED_ENCRYPTED_FIELDS


def test_the_column_is_plain_text_on_this_backend():
    # One opaque token per value: a text column, nothing the database could index or search.
    f = Connection._meta.get_field("config")
    assert f.db_type(connection) == "text"


@pytest.mark.parametrize(
    "value",
    [0, False, "", [], {}, 1.5, "ünïcødé ✓", {"a": {"b": [1, 0, False, None, "", {"c": ""}]}, "n": 0}, [[[]]]],
    ids=["zero", "false", "empty-string", "empty-list", "empty-dict", "float", "unicode", "nested", "deep-list"],
)
def test_values_round_trip_exactly(project, value):
    # Falsy values are values: each is stored as a token and comes back identical (not None, not {}).
    conn = Connection.objects.create(project=project, name="raw", type="http", config=value)
    stored = raw_column(Connection, "config")[str(conn.pk)]
    assert stored.startswith("gAAAAA")
    again = Connection.objects.get(pk=conn.pk).config
    assert again == value and type(again) is type(value)


def test_null_is_stored_as_sql_null_not_as_a_token(stored_secrets):
    delivery = CallbackDelivery.objects.get()
    CallbackDelivery.objects.filter(pk=delivery.pk).update(auth=None)
    assert raw_column(CallbackDelivery, "auth")[str(delivery.pk)] is None
    delivery.refresh_from_db()
    assert delivery.auth is None
    assert CallbackDelivery.objects.filter(auth__isnull=True).count() == 1


@pytest.mark.parametrize(
    "lookup",
    [
        {"config": {"api_key": "x"}},
        {"config__exact": "x"},
        {"config__contains": "canary"},
        {"config__icontains": "canary"},
        {"config__startswith": "gAAAAA"},
        {"config__in": ["x"]},
        {"config__api_key": "x"},
    ],
    ids=["equals", "exact", "contains", "icontains", "startswith", "in", "key-transform"],
)
def test_lookups_on_an_encrypted_field_are_refused(stored_secrets, lookup):
    with pytest.raises(FieldError):
        list(Connection.objects.filter(**lookup))
    with pytest.raises(FieldError):
        list(Connection.objects.exclude(**lookup))


def test_isnull_is_the_one_lookup_allowed(stored_secrets):
    assert Connection.objects.filter(config__isnull=False).count() == Connection.objects.count()


def test_serializers_refuse_to_dump_secrets(stored_secrets):
    # dumpdata would otherwise write every secret out in plaintext.
    with pytest.raises(FieldError):
        serializers.serialize("json", Connection.objects.all())


def test_a_token_of_an_unknown_key_fails_closed(stored_secrets, settings):
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(DecryptionError):
        Connection.objects.get(pk=stored_secrets.objects["api"].pk)
    with pytest.raises(DecryptionError):
        list(OAuthProvider.objects.values_list("client_secret", flat=True))


def test_a_token_opened_once_is_refused_once_its_key_is_dropped(settings):
    """decrypt_json keeps opened tokens per process (the run path's hot read); the cache is keyed by the
    configured keys too, so dropping a key from FERNET_KEYS still refuses what only that key opens."""
    from apps.core.crypto import decrypt_json, encrypt_json

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FERNET_KEYS = [old]
    token = encrypt_json({"api_key": "opened-once"})
    assert decrypt_json(token) == {"api_key": "opened-once"}
    assert decrypt_json(token) == {"api_key": "opened-once"}  # from the cache
    settings.FERNET_KEYS = [new]
    with pytest.raises(DecryptionError):
        decrypt_json(token)
    settings.FERNET_KEYS = [new, old]
    first = decrypt_json(token)
    first["api_key"] = "mutated by a caller"
    assert decrypt_json(token) == {"api_key": "opened-once"}  # every caller gets its own copy
