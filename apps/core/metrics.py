"""Prometheus metrics (SPEC §15): the definitions, the small recording calls the run path makes, and the
`/metrics` answer (see apps.core.middleware.MetricsMiddleware for who may read it).

Every label value is bounded: HTTP requests are labelled with the URL pattern that matched
(`/v1/runs/<uuid:run_id>`), never the raw path; node and error types come from the engine's registry and
error classes (anything else is counted as `other`); outcomes are fixed words.

Processes: with PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py sets it for every gunicorn master; the
variable must be in the environment before prometheus_client is imported), each process writes its samples
to its own memory-mapped files there and `/metrics` adds up the files of every worker, dead ones included,
so a counter never goes back when a worker is replaced. Without it (runserver, tests, the embedded default)
the process's own registry is exposed, with the process_* and python_* collectors.

Cost: a recording call is a dict lookup and a locked float add (an mmap write in multi-process mode); the
labelled children are cached here so the hot path skips prometheus_client's label validation.
"""

from __future__ import annotations

import os
import re
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

# Read once, like prometheus_client itself does when it is first imported.
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")

HTTP_REQUESTS = Counter(
    "rcp_http_requests", "HTTP requests answered, by matched URL pattern (`app:` for App-host routes) and status.",
    ["route", "status"],
)
RUNS = Counter("rcp_runs", "Runs ended, by mode and final status.", ["mode", "status"])
RUN_DURATION = Histogram(
    "rcp_run_duration_seconds", "Run duration from started to ended, by mode.", ["mode"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
RUN_QUEUE_LAG = Histogram(
    "rcp_run_queue_lag_seconds", "Background and async runs: time from created to started (first claim), by mode.",
    ["mode"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
NODE_FAILURES = Counter("rcp_node_failures", "Failed nodes, by node type and error type.", ["node_type", "error_type"])
CREDENTIAL_RESOLUTIONS = Counter(
    "rcp_credential_resolutions", "Credential resolutions of runs, by outcome (resolved, unsatisfied).", ["outcome"],
)
OAUTH2_REFRESHES = Counter(
    "rcp_oauth2_refreshes", "OAuth2 token refreshes asked of a provider, by outcome (success, failure).", ["outcome"],
)
DELIVERIES = Counter(
    "rcp_deliveries", "Delivery attempts of run callbacks (kind `callback`), by outcome (delivered, retrying, dead).",
    ["kind", "outcome"],
)
MCP_TOOL_CALLS = Counter(
    "rcp_mcp_tool_calls", "MCP tools/call answers, by outcome (completed, failed, invalid_input, unsatisfied, "
    "not_deployed, error). Their runs count in rcp_runs as mode `sync`.", ["outcome"],
)

PROXY_CALLS = Counter(
    "rcp_proxy_calls", "Authenticated proxy calls (SPEC §14), by the status the caller got and the outcome "
    "(completed, refused, upstream_error, too_large, timed_out, client_gone).", ["status", "outcome"],
)

UNMATCHED_ROUTE = "(unmatched)"
_TYPE_WORD = re.compile(r"[a-z][a-z0-9_.]{0,63}")
_children: dict[tuple, object] = {}


def _child(metric, *labels: str):
    """The labelled child, cached (labels() validates and locks on every call)."""
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def _word(value: object) -> str:
    """A type name as a label value: a lower-case identifier, or `other` (never free text)."""
    return value if isinstance(value, str) and _TYPE_WORD.fullmatch(value) else "other"


def http_request(*, route: str, status: int) -> None:
    _child(HTTP_REQUESTS, route, str(status)).inc()


def run_ended(*, mode: str, status: str, started_at: datetime | None, ended_at: datetime | None) -> None:
    """Once per run, when its terminal state is stored."""
    _child(RUNS, mode, status).inc()
    if started_at is not None and ended_at is not None:
        _child(RUN_DURATION, mode).observe(max(0.0, (ended_at - started_at).total_seconds()))


def run_queue_lag(*, mode: str, created_at: datetime, started_at: datetime) -> None:
    _child(RUN_QUEUE_LAG, mode).observe(max(0.0, (started_at - created_at).total_seconds()))


def node_failed(*, node_type: object, error_type: object) -> None:
    _child(NODE_FAILURES, _word(node_type), _word(error_type)).inc()


def credential_resolution(*, outcome: str) -> None:
    _child(CREDENTIAL_RESOLUTIONS, outcome).inc()


def oauth2_refresh(*, success: bool) -> None:
    _child(OAUTH2_REFRESHES, "success" if success else "failure").inc()


def delivery(*, kind: str, outcome: str) -> None:
    _child(DELIVERIES, kind, outcome).inc()


def mcp_tool_call(*, outcome: str) -> None:
    _child(MCP_TOOL_CALLS, _word(outcome)).inc()


def proxy_call(*, status: int | None, outcome: str) -> None:
    _child(PROXY_CALLS, str(status) if status else "none", _word(outcome)).inc()


def exposition() -> tuple[bytes, str]:
    """The text format of every process's samples (multi-process mode) or of this process's registry."""
    if MULTIPROCESS_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=MULTIPROCESS_DIR)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
