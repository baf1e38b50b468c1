"""Executing a Run with the engine: the one place that builds the engine's inputs from a Run (definition,
input, files, options, template limits, the SSRF-guarded HTTP client, the credential resolver) and copies
the masked result back onto it.

Both paths use it: the synchronous one (apps.runs.services.run_sync, events in memory) and the run
lifecycle (apps.runs.lifecycle, events written as they happen). It writes nothing itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.core import log_context, metrics
from apps.credentials.resolvers import HttpResolver
from apps.credentials.services import InProcessResolver
from apps.engine import RunContext, RunOptions, RunResult, TemplateLimits, execute
from apps.engine.types import CredentialResolver

from .files import file_descriptors
from .http import http_client
from .models import Run

logger = logging.getLogger(__name__)


def make_resolver(*, defer_audit: bool = False) -> CredentialResolver:
    """The credential resolver of a run: in process, unless CREDENTIALS_API_URL says this process runs apart
    from the credentials store (then over the internal API, which audits on its side).

    `defer_audit` (in process only): keep the audit rows until `write_pending_audit()`, so a synchronous run
    writes them in its one transaction."""
    if settings.CREDENTIALS_API_URL:
        return HttpResolver(base_url=settings.CREDENTIALS_API_URL, token=settings.CREDENTIALS_API_TOKEN)
    return InProcessResolver(defer_audit=defer_audit)


def node_summary(result: RunResult) -> dict[str, dict[str, Any]]:
    """What a Run keeps per node: status, error, credential provenance (IDs only, never a value)."""
    summary = {}
    for node_id, node in result.nodes.items():
        entry: dict[str, Any] = {"status": node.status}
        if node.error:
            entry["error"] = node.error
        if node.connection:
            entry["connection"] = node.connection
        if node.duration_ms is not None:
            entry["duration_ms"] = round(node.duration_ms, 3)
        summary[node_id] = entry
    return summary


def execute_run(
    *,
    run: Run,
    emit: Callable[[str, dict[str, Any]], Any],
    resolver: CredentialResolver | None = None,
    is_canceled: Callable[[], bool] | None = None,
) -> RunResult:
    """Execute `run` (status `started`) with the engine and copy the masked result onto it (unsaved)."""
    # Every line from here to the end of the request or job names the run (SPEC §15).
    log_context.bind(run_id=run.id, app_id=run.app_id, user_id=run.user_id)
    files = file_descriptors(app_id=run.app_id, file_ids=run.file_ids) if run.file_ids else []
    result = execute(
        definition=run.workflow_version.definition,
        run_input=run.input,
        resolver=resolver or make_resolver(),
        context=RunContext(app_id=str(run.app_id), user_id=run.user_id or None, run_id=str(run.id), files=files),
        options=RunOptions(
            error_on_node_failure=bool(run.options.get("error_on_node_failure")),
            last_node_output=bool(run.options.get("last_node_output")),
            stream=bool(run.options.get("stream")),
            template_limits=TemplateLimits(
                max_output_chars=settings.TEMPLATE_MAX_OUTPUT_CHARS,
                max_width=settings.TEMPLATE_MAX_WIDTH,
                max_loop_steps=settings.TEMPLATE_MAX_LOOP_STEPS,
                max_render_seconds=settings.TEMPLATE_MAX_RENDER_SECONDS,
                max_built_chars=settings.TEMPLATE_MAX_BUILT_CHARS,
            ),
        ),
        http_client=http_client(),
        on_event=emit,
        is_canceled=is_canceled,
        allow_private_network=settings.ALLOW_PRIVATE_NETWORK_TARGETS,
        definition_key=str(run.workflow_version_id),  # versions are immutable
    )
    run.status = {"completed": Run.Status.COMPLETED, "failed": Run.Status.FAILED, "canceled": Run.Status.CANCELED}[
        result.status
    ]
    run.output = result.output if result.status == "completed" else None
    run.error = result.error
    run.nodes = node_summary(result)
    run.ended_at = timezone.now()
    _count_node_failures(run, result)
    _log_run_end(run)
    return result


def _count_node_failures(run: Run, result: RunResult) -> None:
    """Metrics: each failed node by its type and error type (a node stopped by a cancel is not a failure)."""
    types = None
    for node_id, node in result.nodes.items():
        error_type = (node.error or {}).get("type")
        if node.status == "failure" and error_type != "canceled":
            if types is None:
                types = {n.get("id"): n.get("type") for n in run.workflow_version.definition.get("nodes", [])}
            metrics.node_failed(node_type=types.get(node_id), error_type=error_type)


def _log_run_end(run: Run) -> None:
    """One line per executed run: its outcome, never its input, output or error message (they may hold
    what an end user typed). Not for input the engine refused: that is a 400 (the access log's), and the
    run is not stored, so its ID would name nothing."""
    if not logger.isEnabledFor(logging.INFO):
        return
    error_code = (run.error or {}).get("code")
    if error_code == "invalid_input":
        return
    duration_ms = round((run.ended_at - run.started_at).total_seconds() * 1000) if run.started_at else None
    logger.info("run %s %s in %s ms", run.id, run.status, duration_ms,
                extra={"status": run.status, "mode": run.mode, "duration_ms": duration_ms,
                       **({"error_code": error_code} if error_code else {})})
