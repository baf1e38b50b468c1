"""apps.core.rawsql stores and loads exactly what the ORM does (both databases), in one statement."""

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.connections.models import Connection
from apps.core.rawsql import Columns, insert_instances, insert_rows, insert_together, instance_batch, uuid4_batch
from apps.runs.models import Run, RunEvent
from tests import factories

pytestmark = pytest.mark.django_db


def _run(app, **overrides):
    deployment = app.current_deployment
    fields = dict(
        id=uuid.uuid4(), app=app, deployment=deployment, workflow_version=deployment.workflow_version,
        user_id="user-42", session_id="s-1", input={"q": "é ☃", "n": [1, 2.5, None, True]}, output=["a", {"b": None}],
        error=None, status=Run.Status.COMPLETED, mode=Run.Mode.SYNC, nodes={"n": {"status": "success"}},
        options={"stream": False}, file_ids=[], idempotency_key="", cancel_requested=False, attempts=1,
        heartbeat_at=None, created_at=timezone.now() - timedelta(seconds=2), started_at=timezone.now(),
        ended_at=timezone.now() + timedelta(milliseconds=5),
    )
    fields.update(overrides)
    return Run(**fields)


def _stored(run_id):
    run = Run.objects.get(pk=run_id)
    return {f.attname: getattr(run, f.attname) for f in Run._meta.concrete_fields if f.attname != "id"}


@pytest.fixture
def app(project, upstream):
    conn = factories.make_connection(project, name="raw", config={"url": upstream.url, "api_key": "k-raw"})
    workflow = factories.make_workflow(project, "raw")
    version = factories.make_version(workflow, factories.definition(factories.http_node("call", ref={"id": str(conn.id)}, url=upstream.url)))
    return factories.make_app(project, name="Raw", version=version)


def test_insert_instances_stores_what_save_stores(app):
    by_orm, by_raw = _run(app), _run(app)
    by_raw.__dict__.update({k: v for k, v in by_orm.__dict__.items() if k not in ("id", "_state")})
    by_orm.save(force_insert=True)
    with CaptureQueriesContext(connection) as captured:
        assert insert_instances([by_raw]) == 1
    assert [q for q in captured.captured_queries if q["sql"].startswith("INSERT")]
    assert _stored(by_raw.id) == _stored(by_orm.id)
    assert by_raw._state.adding is False


def test_naive_and_null_values_take_the_full_field_chain(app, settings):
    run = _run(app, ended_at=None, error={"code": "x"}, output=None)
    insert_instances([run])
    stored = Run.objects.get(pk=run.pk)
    assert stored.ended_at is None and stored.output is None and stored.error == {"code": "x"}


def test_thousands_of_rows_are_one_statement(app):
    """SQLite's real parameter limit (32766), not Django's conservative 999: a 200-node run's ~400 events
    are one INSERT on both databases."""
    run = _run(app)
    run.save(force_insert=True)
    now = timezone.now()
    rows = [(event_id, run.id, index + 1, "node.completed", {"i": index}, now)
            for index, event_id in enumerate(uuid4_batch(1000))]
    assert insert_rows(RunEvent, ("id", "run_id", "sequence", "type", "data", "timestamp"), rows) == 1
    assert list(RunEvent.objects.filter(run=run).order_by("sequence").values_list("data", flat=True)) == [
        {"i": i} for i in range(1000)
    ]


def test_insert_together_stores_several_tables_rows_in_one_statement(app):
    """Several tables, several rows, NULLs, JSON and datetimes: stored as the ORM loads them back. PostgreSQL: one
    statement (data-modifying CTEs); SQLite: one INSERT per table in one transaction."""
    for count in (1, 5):
        run = _run(app, output=None, error={"code": "x", "n": [None, 1.5]}, ended_at=None)
        events = [RunEvent(id=event_id, run_id=run.id, sequence=index + 1, type="node.completed",
                           data=[] if index % 2 else {"i": index, "s": "é"}, timestamp=timezone.now())
                  for index, event_id in enumerate(uuid4_batch(count))]
        written = insert_together([instance_batch([run]), instance_batch(events)])
        assert written == (1 if connection.vendor == "postgresql" else 2)
        stored = Run.objects.get(pk=run.id)
        assert (stored.output, stored.error, stored.ended_at) == (None, {"code": "x", "n": [None, 1.5]}, None)
        assert list(RunEvent.objects.filter(run_id=run.id).order_by("sequence").values_list("data", flat=True)) == [
            [] if index % 2 else {"i": index, "s": "é"} for index in range(count)]


def test_columns_load_what_a_queryset_loads_including_decryption(app, project):
    conn = factories.make_connection(project, name="enc", config={"url": "https://api.example.com", "api_key": "k-enc"})
    columns = Columns(Connection, "c")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns.sql()} FROM connections_connection c WHERE c.id = %s",
                       [Connection._meta.pk.get_db_prep_value(conn.id, connection)])
        loaded = columns.load(cursor.fetchone())
    expected = Connection.objects.get(pk=conn.pk)
    assert {f.attname: getattr(loaded, f.attname) for f in Connection._meta.concrete_fields} == {
        f.attname: getattr(expected, f.attname) for f in Connection._meta.concrete_fields
    }
    assert loaded.config["api_key"] == "k-enc" and loaded._state.adding is False


def test_uuid4_batch_gives_distinct_version_4_uuids():
    ids = uuid4_batch(500)
    assert len(set(ids)) == 500 and all(i.version == 4 for i in ids)
