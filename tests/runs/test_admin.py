"""A run's admin page reads at a glance: nodes and events as tables, every JSON value folded in <details>."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.runs.models import RunEvent
from tests.support.admin import assert_no_secret


@pytest.fixture
def failed_run(world):
    run = world.run
    run.status, run.output = "failed", None
    run.error = {"code": "node_failed", "message": "Node mine failed: The upstream answered 500", "node_id": "mine",
                 "type": "http_error", "details": {"node_id": "mine", "type": "http_error"}}
    run.nodes = {"input": {"status": "success", "duration_ms": 0.1},
                 "mine": {"status": "failure", "duration_ms": 120.0,
                          "error": {"type": "http_error", "message": "The upstream answered 500"}},
                 "output": {"status": "skipped"}}
    run.save()
    now = timezone.now()
    RunEvent.objects.filter(run=run).delete()
    types = ["run.created", "run.started", "node.started", "node.failed", "node.skipped",
             *["llm.delta"] * 40, "run.failed"]
    RunEvent.objects.bulk_create([
        RunEvent(run=run, sequence=i, type=t, timestamp=now,
                 data={"node_id": "mine", "error": {"type": "http_error", "message": "The upstream answered 500"},
                       "padding": "x" * 200} if t == "node.failed" else {"node_id": "mine"})
        for i, t in enumerate(types, start=1)
    ])
    return run


def test_the_run_page_shows_nodes_and_events_as_tables_with_json_folded(operator_client, world, failed_run):
    body = operator_client.get(reverse("admin:runs_run_change", args=[failed_run.pk])).content.decode()
    assert "node_failed (node mine): Node mine failed: The upstream answered 500" in body
    assert "http_error: The upstream answered 500" in body  # the node table and the node.failed row
    assert "llm.delta ×40" in body  # streamed deltas folded into one row
    assert body.count("<tr>") >= 3 + 7  # 3 node rows + 7 event rows
    pres = re.findall(r"<pre[^>]*>", body)
    folded = re.findall(r"<details[^>]*><summary[^>]*>[^<]*</summary><pre", body)
    assert pres and len(folded) == len(pres)  # every JSON block sits in a <details>
    assert_no_secret(body, world.secrets)


def test_a_run_with_many_events_links_to_the_full_list(operator_client, world, failed_run):
    now = timezone.now()
    RunEvent.objects.bulk_create([RunEvent(run=failed_run, sequence=100 + i, type="node.started", timestamp=now,
                                           data={"node_id": f"n{i}"}) for i in range(400)])
    body = operator_client.get(reverse("admin:runs_run_change", args=[failed_run.pk])).content.decode()
    assert f"run__id__exact={failed_run.pk}" in body and "all events of this run" in body
