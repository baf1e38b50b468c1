"""Raw SQL readers for tests that check what is really stored, past every model and field converter."""

from __future__ import annotations

from django.db import connection


def _qn(name: str) -> str:
    return connection.ops.quote_name(name)


def raw_column(model, field_name: str) -> dict[str, str | None]:
    """{str(pk): stored value} of one column, exactly as the database holds it."""
    field = model._meta.get_field(field_name)
    pk = model._meta.pk.column
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_qn(pk)}, {_qn(field.column)} FROM {_qn(model._meta.db_table)}")
        return {_pk(row[0]): row[1] for row in cursor.fetchall()}


def raw_rows(table: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {_qn(table)}")
        return cursor.fetchall()


def raw_table_text(table: str) -> str:
    """Every value of every row of `table`, as text (JSON columns included, decoded or not)."""
    return "\n".join(repr(row) for row in raw_rows(table))


def raw_database_text() -> str:
    """Every row of every table of the test database, as text: for scanning for leaked secrets."""
    return "\n".join(f"{table}: {raw_table_text(table)}" for table in sorted(connection.introspection.table_names()))


def _pk(value) -> str:
    # SQLite stores UUIDs as 32 hex characters; PostgreSQL returns uuid.UUID. Normalize to the dashed form.
    import uuid

    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(value)
