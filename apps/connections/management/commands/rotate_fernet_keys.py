"""`manage.py rotate_fernet_keys`: re-encrypt every stored secret with the first key of FERNET_KEYS.

Key rotation: put the new key first (`FERNET_KEYS=new,old`), deploy, run this command, then drop the
old key. Tokens are rotated as tokens (`MultiFernet.rotate` via `apps.core.crypto.rotate_token`) with
raw SQL: no value is decrypted into a model, no `save()` runs, `updated_at` and history stay as they are.

Fail closed: a first, read-only pass opens every stored token; if any cannot be opened with the
configured keys the command writes nothing and lists the row IDs. Each column is then rotated in its own
transaction, in batches, and rolled back whole if a row turns out unreadable after all. Tokens already
encrypted with the first key are left alone, so running the command again writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from apps.core.checks import invalid_fernet_keys
from apps.core.crypto import DecryptionError, rotate_token
from apps.core.fields import ENCRYPTED_FIELDS

MAX_LISTED_IDS = 100


@dataclass(frozen=True)
class _Column:
    label: str  # app.Model.field, for messages
    table: str
    pk: str
    column: str
    pk_field: object = None  # to show IDs as the application does (SQLite stores UUIDs as 32 hex digits)

    def show(self, pk: object) -> str:
        return str(self.pk_field.to_python(pk)) if self.pk_field is not None else str(pk)


@dataclass
class _Counts:
    rotated: int = 0
    current: int = 0
    changed_meanwhile: int = 0


class _Unreadable(Exception):
    def __init__(self, ids: list[str]):
        super().__init__(f"{len(ids)} unreadable row(s)")
        self.ids = ids


def _columns() -> list[_Column]:
    seen: dict[tuple[str, str], _Column] = {}
    for field in ENCRYPTED_FIELDS:
        meta = field.model._meta
        key = (meta.db_table, field.column)
        if key not in seen:
            seen[key] = _Column(f"{meta.label}.{field.name}", meta.db_table, meta.pk.column, field.column, meta.pk)
    return list(seen.values())


class Command(BaseCommand):
    help = "Re-encrypt every stored secret (every EncryptedJSONField) with the first key of FERNET_KEYS."
    # The core.E001 check (stored secrets unreadable) would stop the command before it could list the
    # rows; this command makes the same check itself, over every row rather than a sample.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="Rows read and written per batch (default 500).")
        parser.add_argument(
            "--check", action="store_true", help="Only verify that every stored secret can be decrypted; write nothing."
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: default).")

    def handle(self, *args, batch_size: int, check: bool, database: str, verbosity: int = 1, **options) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        problems = invalid_fernet_keys()
        if problems:
            raise CommandError(" ".join(problems))
        first = settings.FERNET_KEYS[0]
        primary = Fernet(first.encode() if isinstance(first, str) else first)

        self.connection = connections[database]
        self.batch_size = batch_size
        existing = set(self.connection.introspection.table_names())
        columns = [c for c in _columns() if c.table in existing]
        for missing in sorted(c.label for c in _columns() if c.table not in existing):
            self.stderr.write(f"{missing}: table not created yet (run migrate); skipped")

        # Pass 1, read-only: refuse to write anything if any stored token cannot be opened.
        unreadable = {c.label: ids for c in columns if (ids := self._unreadable_ids(c))}
        if unreadable:
            raise CommandError(self._unreadable_message(unreadable, "Nothing was re-encrypted"))
        if check:
            if verbosity:
                self.stdout.write(f"All stored secrets can be decrypted ({len(columns)} column(s) checked).")
            return

        # Pass 2: rotate, one transaction per encrypted column (each table has one today).
        total = 0
        for column in columns:
            try:
                counts = self._rotate(column, primary)
            except _Unreadable as exc:
                raise CommandError(
                    self._unreadable_message({column.label: exc.ids}, f"Nothing was re-encrypted in {column.table}")
                ) from None
            total += counts.rotated
            if verbosity:
                line = f"{column.label}: {counts.rotated} rotated, {counts.current} already on the first key"
                if counts.changed_meanwhile:
                    line += f", {counts.changed_meanwhile} rewritten by the application meanwhile (left as written)"
                self.stdout.write(line)
        if verbosity:
            self.stdout.write(f"Done: {total} secret(s) re-encrypted with the first key of FERNET_KEYS.")

    def _batches(self, column: _Column) -> Iterator[list[tuple[object, str]]]:
        """(pk, token) rows in pk order, `batch_size` at a time (keyset pagination: no OFFSET scans)."""
        qn = self.connection.ops.quote_name
        base = f"SELECT {qn(column.pk)}, {qn(column.column)} FROM {qn(column.table)} WHERE {qn(column.column)} IS NOT NULL"
        last = None
        while True:
            with self.connection.cursor() as cursor:
                if last is None:
                    cursor.execute(f"{base} ORDER BY {qn(column.pk)} LIMIT %s", [self.batch_size])
                else:
                    cursor.execute(f"{base} AND {qn(column.pk)} > %s ORDER BY {qn(column.pk)} LIMIT %s", [last, self.batch_size])
                rows = cursor.fetchall()
            if not rows:
                return
            yield rows
            if len(rows) < self.batch_size:
                return
            last = rows[-1][0]

    def _unreadable_ids(self, column: _Column) -> list[str]:
        bad = []
        for rows in self._batches(column):
            for pk, token in rows:
                try:
                    rotate_token(token)
                except DecryptionError:
                    bad.append(column.show(pk))
        return bad

    def _rotate(self, column: _Column, primary: Fernet) -> _Counts:
        qn = self.connection.ops.quote_name
        # Compare-and-set: a row the application rewrote since we read it (necessarily with the first
        # key) is not overwritten with our copy of the older value.
        update = f"UPDATE {qn(column.table)} SET {qn(column.column)} = %s WHERE {qn(column.pk)} = %s AND {qn(column.column)} = %s"
        counts = _Counts()
        bad: list[str] = []
        with transaction.atomic(using=self.connection.alias):
            for rows in self._batches(column):
                updates = []
                for pk, token in rows:
                    try:
                        primary.decrypt(token.encode())
                    except InvalidToken:
                        pass
                    else:
                        counts.current += 1
                        continue
                    try:
                        updates.append((rotate_token(token), pk, token))
                    except DecryptionError:
                        bad.append(column.show(pk))
                if bad:
                    continue  # keep scanning to list every unreadable row; the transaction is rolled back
                with self.connection.cursor() as cursor:
                    for params in updates:
                        cursor.execute(update, list(params))
                        if cursor.rowcount == 1:
                            counts.rotated += 1
                        else:
                            counts.changed_meanwhile += 1
            if bad:
                raise _Unreadable(bad)
        return counts

    @staticmethod
    def _unreadable_message(unreadable: dict[str, list[str]], outcome: str) -> str:
        parts = []
        for label, ids in unreadable.items():
            shown = ", ".join(ids[:MAX_LISTED_IDS])
            more = f" and {len(ids) - MAX_LISTED_IDS} more" if len(ids) > MAX_LISTED_IDS else ""
            parts.append(f"{label}: {len(ids)} row(s): {shown}{more}")
        return (
            f"{outcome}: stored secrets cannot be decrypted with FERNET_KEYS. "
            "Put the key they were written with back in FERNET_KEYS (after the new one) and run again.\n  "
            + "\n  ".join(parts)
        )
