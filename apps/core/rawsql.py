"""Hand-written SQL for the run path's few hot statements, with the ORM's own field conversions.

On a one-node run, compiling the ORM's queries (joins, select lists, converters) cost more than executing
them (bench/inprocess.py --profile). The selectors of the run path therefore write their SQL once, as a
string, and use these helpers so the values still go through each field's own conversions, on every
backend:
- `Columns`: the select list of a model's fields under an alias, and the loader that turns those columns
  of a row back into a model instance (backend and field converters applied, e.g. decryption of an
  EncryptedJSONField, UUIDs and datetimes on SQLite), exactly as a queryset would build it.
- `insert_instances`: one multi-row INSERT of unsaved instances, with each field's `pre_save` and
  `get_db_prep_save` (JSON adaptation, encryption, auto_now_add), batched only past the backend's real
  parameter limit.

Everything is parameterised; identifiers come from model metadata, never from input. No signals are sent
(none of the models written here has receivers). See docs/decisions.md, "Raw SQL on the run path".
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.db.models import Model

_PG_MAX_PARAMS = 65535


class Columns:
    """A model's fields (all concrete ones, or `only` these, or all but `defer`) selected under `alias`."""

    def __init__(self, model: type[Model], alias: str, *, only: Sequence[str] = (), defer: Sequence[str] = ()):
        fields = [f for f in model._meta.concrete_fields if (not only or f.name in only) and f.name not in defer]
        self.model = model
        self.alias = alias
        self.fields = fields
        self.attnames = [f.attname for f in fields]
        self.width = len(fields)
        self._pk_index = next((i for i, f in enumerate(fields) if f.primary_key), None)
        self._converters: dict[str, list[tuple[int, list]]] = {}

    def sql(self, using: str = DEFAULT_DB_ALIAS) -> str:
        quote = connections[using].ops.quote_name
        return ", ".join(f"{quote(self.alias)}.{quote(f.column)}" for f in self.fields)

    def _converters_for(self, connection) -> list[tuple[int, list]]:
        converters = self._converters.get(connection.vendor)
        if converters is None:
            converters = []
            for index, field in enumerate(self.fields):
                column = field.get_col(self.alias)
                found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
                if found:
                    converters.append((index, [(converter, column) for converter in found]))
            self._converters[connection.vendor] = converters
        return converters

    def load(self, row: Sequence[Any], offset: int = 0, *, using: str = DEFAULT_DB_ALIAS) -> Model | None:
        """The instance from `row[offset:offset + width]`; None when its primary key is NULL (an outer join
        that matched nothing)."""
        connection = connections[using]  # once: every attribute of the `connection` proxy is a lookup
        values = list(row[offset:offset + self.width])
        if self._pk_index is not None and values[self._pk_index] is None:
            return None
        for index, converters in self._converters_for(connection):
            value = values[index]
            for converter, column in converters:
                value = converter(value, column, connection)
            values[index] = value
        return self.model.from_db(using, self.attnames, values)


def set_related(instance: Model, field_name: str, related: Model | None) -> None:
    """Fill the cache of a forward relation, as select_related does (accessing it then runs no query)."""
    instance._meta.get_field(field_name).set_cached_value(instance, related)


def max_params(connection) -> int:
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        # Django assumes 999 (old SQLite builds); the linked library knows its real limit (32766 since 3.32).
        return connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return _PG_MAX_PARAMS


def uuid4_batch(count: int) -> list[uuid.UUID]:
    """`count` random (version 4) UUIDs from one call to the OS's random source instead of one call each."""
    data = os.urandom(16 * count)
    return [uuid.UUID(bytes=data[i:i + 16], version=4) for i in range(0, 16 * count, 16)]


# Field classes whose database value is the Python value itself when it has exactly this type: the generic
# get_db_prep_save chain (five calls per value) is skipped for them, for the same result.
_PASSTHROUGH = {
    models.CharField: str, models.TextField: str, models.IntegerField: int, models.PositiveIntegerField: int,
    models.BigIntegerField: int, models.SmallIntegerField: int, models.PositiveSmallIntegerField: int,
}


class _InsertPlan:
    """What an INSERT into one table with given columns needs, worked out once per process and backend."""

    def __init__(self, model: type[Model], attnames: Sequence[str], connection):
        by_attname = {f.attname: f for f in model._meta.concrete_fields}
        self.fields = [by_attname[name] for name in attnames]
        quote = connection.ops.quote_name
        self.head = f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in self.fields)}) VALUES "
        self.row_sql = "(" + ", ".join(["%s"] * len(self.fields)) + ")"
        self.per_statement = max(1, max_params(connection) // len(self.fields))
        native_uuid = connection.features.has_native_uuid_field
        ops = connection.ops
        # Per field: (field, the value types the shortcut applies to, the shortcut). The shortcut is the end of
        # the field's own get_db_prep_save chain for those types; anything else takes the whole chain.
        self.preps: list[tuple[Any, tuple[type, ...], Any]] = []
        for field in self.fields:
            kind = type(field)
            target = type(field.target_field) if field.is_relation else None
            if kind in _PASSTHROUGH:
                self.preps.append((field, (_PASSTHROUGH[kind],), None))
            elif kind is models.UUIDField or target is models.UUIDField:
                self.preps.append((field, (uuid.UUID,), None if native_uuid else _uuid_hex))
            elif kind is models.JSONField and field.encoder is None:
                self.preps.append((field, (dict, list), _json_adapter(ops)))
            elif kind is models.DateTimeField:
                self.preps.append((field, (datetime,), _aware_datetime_adapter(ops)))
            else:
                self.preps.append((field, (), None))

    def values(self, row: Sequence[Any], connection) -> list[Any]:
        values = []
        for (field, types, shortcut), value in zip(self.preps, row, strict=True):
            if type(value) in types:
                if shortcut is None:
                    values.append(value)
                    continue
                prepared = shortcut(value)
                if prepared is not _FULL_CHAIN:
                    values.append(prepared)
                    continue
            values.append(field.get_db_prep_save(value, connection))
        return values


_FULL_CHAIN = object()


def _uuid_hex(value: uuid.UUID) -> str:
    return value.hex


def _json_adapter(ops):
    return lambda value: ops.adapt_json_value(value, None)


def _aware_datetime_adapter(ops):
    # Naive datetimes take the full chain (which warns about them when USE_TZ is on).
    return lambda value: ops.adapt_datetimefield_value(value) if value.tzinfo is not None else _FULL_CHAIN


_plans: dict[tuple, _InsertPlan] = {}


def _plan(model: type[Model], attnames: Sequence[str], connection) -> _InsertPlan:
    key = (model, tuple(attnames), connection.vendor)
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = _InsertPlan(model, attnames, connection)
    return plan


def insert_rows(model: type[Model], attnames: Sequence[str], rows: Sequence[Sequence[Any]], using: str = DEFAULT_DB_ALIAS) -> int:
    """INSERT `rows` (values in `attnames` order, primary key included) into `model`'s table, each value as
    its field's `get_db_prep_save` makes it; one statement unless the backend's parameter limit forces a
    split. Returns the number of statements."""
    if not rows:
        return 0
    connection = connections[using]
    plan = _plan(model, attnames, connection)
    statements = 0
    with connection.cursor() as cursor:
        for start in range(0, len(rows), plan.per_statement):
            batch = rows[start:start + plan.per_statement]
            params: list[Any] = []
            for row in batch:
                params.extend(plan.values(row, connection))
            cursor.execute(plan.head + ", ".join([plan.row_sql] * len(batch)), params)
            statements += 1
    return statements


def instance_batch(objs: Sequence[Model]) -> tuple[type[Model], list[str], list[list[Any]]]:
    """(model, attnames, rows) of unsaved instances of one model, each field's `pre_save` applied (as `save()`
    would: auto_now_add and the like), for `insert_rows` / `insert_together`."""
    model = type(objs[0])
    if any(obj.pk is None for obj in objs):
        raise ValueError("raw INSERTs need primary keys set before the INSERT (no RETURNING here)")
    fields = model._meta.concrete_fields
    return model, [f.attname for f in fields], [[f.pre_save(obj, True) for f in fields] for obj in objs]


def _mark_saved(objs: Iterable[Model], using: str) -> None:
    for obj in objs:
        obj._state.adding = False
        obj._state.db = using


def insert_instances(objs: Iterable[Model], using: str = DEFAULT_DB_ALIAS) -> int:
    """INSERT unsaved instances of one model with `insert_rows`. Returns the number of statements."""
    objs = list(objs)
    if not objs:
        return 0
    statements = insert_rows(*instance_batch(objs), using)
    _mark_saved(objs, using)
    return statements


def insert_together(batches: Sequence[tuple[type[Model], Sequence[str], Sequence[Sequence[Any]]]],
                    using: str = DEFAULT_DB_ALIAS, *, savepoint: bool = True) -> int:
    """INSERT several tables' rows all or nothing. PostgreSQL: ONE statement (data-modifying CTEs), atomic by
    itself, so no BEGIN/COMMIT round trips either; Django's foreign keys there are deferred to the end of the
    transaction, so the order of the parts does not matter. Elsewhere (SQLite: no INSERT in a CTE), one
    `insert_rows` per table in one transaction. Inside the caller's transaction a savepoint keeps it usable
    after a failure, unless `savepoint=False` (the caller rolls its whole block back anyway). Returns the
    number of statements."""
    batches = [(model, attnames, rows) for model, attnames, rows in batches if rows]
    if not batches:
        return 0
    connection = connections[using]
    plans = [_plan(model, attnames, connection) for model, attnames, _ in batches]
    params_needed = sum(len(rows) * len(plan.fields) for (_, _, rows), plan in zip(batches, plans, strict=True))
    if connection.vendor != "postgresql" or params_needed > _PG_MAX_PARAMS:
        with transaction.atomic(using=using, savepoint=savepoint):
            return sum(insert_rows(model, attnames, rows, using) for model, attnames, rows in batches)
    parts, params = [], []
    for (_, _, rows), plan in zip(batches, plans, strict=True):
        parts.append(plan.head + ", ".join([plan.row_sql] * len(rows)))
        for row in rows:
            params.extend(plan.values(row, connection))
    *ctes, last = parts
    sql = (f"WITH {', '.join(f'w{i} AS ({cte})' for i, cte in enumerate(ctes))} {last}") if ctes else last
    if connection.in_atomic_block and savepoint:  # a failure leaves the caller's transaction usable
        with transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.execute(sql, params)
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    return 1
