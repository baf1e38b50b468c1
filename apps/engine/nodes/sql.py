"""The `sql` node: one read-only, parameterized query on a PostgreSQL connection."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Mapping
from typing import Any

from ..errors import NodeError
from ..netguard import checked_addresses
from ..state import NodeEnv
from ..templating import render
from .base import ConfigKey, Connection, Kind, NodeType


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    return str(value)


def run(env: NodeEnv) -> Any:
    connection = env.require_connection(*NODE.connection_types)
    query = env.config.get("query")
    if not query or not isinstance(query, str):
        raise NodeError("invalid_config", "config.query is required")
    # The query text is never templated (that would be SQL injection by design); values go through params.
    params = render(env.config.get("params"), env.context)
    if params is not None and not isinstance(params, (Mapping, list)):
        raise NodeError("invalid_config", "config.params must be an object (named) or a list (positional)")

    cfg = connection.config
    host = str(cfg.get("host") or "")
    port = int(cfg.get("port") or 5432)
    kwargs: dict[str, Any] = {
        "host": host,
        "port": port,
        "dbname": cfg.get("database"),
        "user": cfg.get("user"),
        "password": cfg.get("password") or None,
        "sslmode": cfg.get("sslmode") or "prefer",
        "connect_timeout": 10,
        # Every transaction of the session starts read-only, so even a statement that ends ours (COMMIT)
        # cannot open a writable one.
        "options": "-c statement_timeout=30000 -c default_transaction_read_only=on",
    }
    if not env.run.allow_private_network:
        # Connect to the checked address (hostaddr); `host` still serves TLS verification.
        kwargs["hostaddr"] = checked_addresses(host, port, allow_private=False)[0]

    # Imported on first use (a heavy driver; most runs never touch SQL), not at module load.
    import psycopg
    from psycopg import Error as PsycopgError
    from psycopg.rows import dict_row

    connect = env.run.db_connect or psycopg.connect

    try:
        conn = connect(**kwargs)
    except PsycopgError as exc:
        raise NodeError("sql_error", f"Could not connect to the database: {exc}".strip()) from exc
    try:
        conn.read_only = True  # BEGIN READ ONLY: writes fail in the server, whatever the query says
        with conn.cursor(row_factory=dict_row) as cursor:
            # prepare=True: always the extended protocol (Parse/Bind/Execute), which takes exactly one
            # statement. Without params psycopg would use the simple protocol, which runs
            # `commit; insert ...` as two statements, the second outside our read-only transaction.
            # Empty params count as none, so a literal `%` needs no escaping either way.
            cursor.execute(query, params or None, prepare=True)
            rows = cursor.fetchall() if cursor.description else []
            rowcount = cursor.rowcount
        conn.rollback()
    except PsycopgError as exc:
        raise NodeError("sql_error", str(exc).strip()) from exc
    finally:
        conn.close()
    return {"rows": [_jsonable(row) for row in rows], "rowcount": rowcount}


NODE = NodeType(
    name="sql",
    run=run,
    config=(ConfigKey("query", Kind.NONBLANK_TEXT, required=True), ConfigKey("params")),
    connection=Connection.REQUIRED,
    connection_types=("postgresql",),
)
