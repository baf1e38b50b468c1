"""sql nodes against the local PostgreSQL (127.0.0.1:5432, user postgres, trust auth, database `test`)."""

import os
import socket

import psycopg
import pytest

from .conftest import FakeResolver, conn, workflow

PG = {"host": "127.0.0.1", "port": 5432, "database": "test", "user": "postgres", "password": "pg-secret-unused",
      "sslmode": "disable"}


def _pg_reachable() -> bool:
    try:
        with socket.create_connection((PG["host"], PG["port"]), timeout=0.5):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not _pg_reachable() and os.environ.get("REQUIRE_SERVICES") != "1",
    reason="PostgreSQL on 127.0.0.1:5432 is not reachable",
)


def sql_workflow(query, params=None):
    return workflow(
        {"id": "q", "type": "sql", "connection": {"id": "pg"}, "config": {"query": query, "params": params}},
        fields={"n": {"type": "integer"}, "name": {"type": "string"}},
        output={"rows": "{{ nodes.q.output.rows }}", "count": "{{ nodes.q.output.rowcount }}"},
    )


def pg_resolver():
    return FakeResolver({"pg": conn("pg", "postgresql", **PG)})


def test_it_runs_a_parameterized_query_with_named_params(run):
    definition = sql_workflow(
        "select %(n)s::int + 1 as next, %(name)s as name, now() as at, 1.50::numeric as price, "
        "'{\"a\": 1}'::jsonb as doc, gen_random_uuid() as id",
        {"n": "{{ input.n }}", "name": "{{ input.name }}"},
    )
    result, _ = run(definition, {"n": 41, "name": "Robert'); drop table students;--"}, resolver=pg_resolver())
    assert result.status == "completed", result.nodes["q"].error
    row = result.output["rows"][0]
    assert row["next"] == 42
    assert row["name"] == "Robert'); drop table students;--"
    assert isinstance(row["at"], str) and row["price"] == "1.50" and row["doc"] == {"a": 1}
    assert isinstance(row["id"], str)
    assert result.output["count"] == 1


def test_it_accepts_positional_params(run):
    result, _ = run(sql_workflow("select x from generate_series(1, %s) as x", ["{{ input.n }}"]), {"n": 3},
                    resolver=pg_resolver())
    assert result.output == {"rows": [{"x": 1}, {"x": 2}, {"x": 3}], "count": 3}


@pytest.mark.parametrize("query", [
    "create table engine_should_not_exist (id int)",
    "create temp table t (id int); insert into t values (1)",
    "insert into pg_catalog.pg_class (relname) values ('x')",
])
def test_writes_fail_in_the_read_only_transaction(run, query):
    result, _ = run(sql_workflow(query), resolver=pg_resolver())
    error = result.nodes["q"].error
    assert result.nodes["q"].status == "failure"
    assert error["type"] == "sql_error"
    # A single write fails in the read-only transaction; several statements are refused before running.
    assert "read-only" in error["message"] or "multiple commands" in error["message"]


def test_the_sql_host_passes_the_ssrf_guard_unless_private_targets_are_allowed(run):
    result, _ = run(sql_workflow("select 1"), resolver=pg_resolver(), allow_private_network=False)
    assert result.nodes["q"].error["type"] == "target_not_allowed"


def test_db_connect_is_injectable_and_receives_the_checked_address(run, monkeypatch):
    import psycopg

    import apps.engine.nodes.sql as nodes_module

    seen = {}

    def fake_connect(**kwargs):
        seen.update(kwargs)
        raise psycopg.OperationalError("nope")

    # A public name (resolution stubbed: no DNS, no traffic): the socket must go to the checked address.
    monkeypatch.setattr(nodes_module, "checked_addresses", lambda host, port, allow_private: ["93.184.216.34"])
    public = conn("pg", "postgresql", host="db.example.com", port=5432, database="d", user="u", password="pw-123456")
    result, _ = run(sql_workflow("select 1"), resolver=FakeResolver({"pg": public}), db_connect=fake_connect,
                    allow_private_network=False)
    assert seen["host"] == "db.example.com"
    assert seen["hostaddr"] == "93.184.216.34"
    assert seen["connect_timeout"] == 10
    assert "-c default_transaction_read_only=on" in seen["options"]
    assert result.nodes["q"].error["type"] == "sql_error"


def test_a_bad_query_is_a_node_failure(run):
    result, _ = run(sql_workflow("select * from no_such_table_here"), resolver=pg_resolver())
    assert result.nodes["q"].error["type"] == "sql_error"
    assert "no_such_table_here" in result.nodes["q"].error["message"]


# --- read-only cannot be escaped (security review H2) ---------------------------------------------------

VICTIM = f"engine_ro_victim_{os.getpid()}"  # per process: parallel runs share the `test` database


def _admin():
    return psycopg.connect(host=PG["host"], port=PG["port"], dbname=PG["database"], user=PG["user"], autocommit=True)


@pytest.fixture
def victim_table():
    with _admin() as admin:
        admin.execute(f"drop table if exists {VICTIM}")
        admin.execute(f"create table {VICTIM} (id int)")
    yield VICTIM
    with _admin() as admin:
        admin.execute(f"drop table if exists {VICTIM}")


def _victim_rows() -> int:
    with _admin() as admin:
        return admin.execute(f"select count(*) from {VICTIM}").fetchone()[0]


@pytest.mark.parametrize("query", [
    "commit; insert into {t} values (1)",
    "set transaction read write; insert into {t} values (1); commit",
    "rollback; begin read write; insert into {t} values (1); commit",
    "commit; set default_transaction_read_only = off; insert into {t} values (1)",
])
@pytest.mark.parametrize("params", [None, [], {}])
def test_a_multi_statement_query_cannot_escape_the_read_only_transaction(run, victim_table, query, params):
    result, _ = run(sql_workflow(query.format(t=victim_table), params), resolver=pg_resolver())
    assert result.nodes["q"].status == "failure"
    assert result.nodes["q"].error["type"] == "sql_error"
    assert _victim_rows() == 0


def test_the_session_default_is_read_only_too(run, victim_table):
    # One statement per node, and the session default is read-only as well: a transaction opened after a
    # COMMIT (by whatever means) could not write either.
    result, _ = run(sql_workflow("show default_transaction_read_only"), resolver=pg_resolver())
    assert result.output["rows"] == [{"default_transaction_read_only": "on"}]
    result, _ = run(sql_workflow(f"insert into {victim_table} values (1)"), resolver=pg_resolver())
    assert "read-only" in result.nodes["q"].error["message"]
    assert _victim_rows() == 0


@pytest.mark.parametrize("params", [None, [], {}])
def test_a_plain_select_still_works_without_params(run, params):
    result, _ = run(sql_workflow("select 1 as one, '100%' as pct", params), resolver=pg_resolver())
    assert result.status == "completed", result.nodes["q"].error
    assert result.output["rows"] == [{"one": 1, "pct": "100%"}]
