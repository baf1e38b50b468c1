"""The run path: create a Run, execute the App's deployed version with the engine, persist the result.

A synchronous run touches the database a constant number of times whatever the workflow's size:
credential resolution (apps.credentials, one batched round), then one INSERT of the finished run and
one bulk INSERT of its events, in one transaction. Background, async and streaming runs are accepted
by `run_accept` (persisted `created` before anything executes them) and executed by apps.runs.worker,
which reuses `execute_run` with a sink that writes events as they happen.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.errors import BadRequest, Conflict, IdempotencyKeyReused, NodeFailed, RequirementsUnsatisfied
from apps.core.formats import rfc3339
from apps.credentials.services import InProcessResolver
from apps.deployments.models import App
from apps.engine import RunContext, RunOptions, RunResult, TemplateLimits, execute
from apps.engine.definition import check_run_input
from apps.engine.types import CredentialResolver

from .http import http_client
from .models import Run, RunEvent
from .requests import RunRequest, body_fingerprint

logger = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW = timedelta(hours=24)


class EventBuffer:
    """Collects a run's events in memory with their sequence numbers; written in one bulk INSERT."""

    def __init__(self, run: Run, *, start_sequence: int = 0):
        self.run = run
        self.sequence = start_sequence
        self.events: list[RunEvent] = []

    def emit(self, type: str, data: dict[str, Any]) -> RunEvent:
        self.sequence += 1
        event = RunEvent(run=self.run, sequence=self.sequence, type=type, data=data, timestamp=timezone.now())
        self.events.append(event)
        return event

    def flush(self) -> None:
        RunEvent.objects.bulk_create(self.events)
        self.events = []


def default_resolver() -> CredentialResolver:
    """In process, unless CREDENTIALS_API_URL says this process runs apart from the credentials store."""
    if settings.CREDENTIALS_API_URL:
        from apps.credentials.resolvers import HttpResolver

        return HttpResolver(base_url=settings.CREDENTIALS_API_URL, token=settings.CREDENTIALS_API_TOKEN)
    return InProcessResolver()


def _node_summary(result: RunResult) -> dict[str, dict[str, Any]]:
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


def terminal_event_data(run: Run) -> dict[str, Any]:
    data: dict[str, Any] = {"status": run.status}
    if run.status == Run.Status.COMPLETED:
        data["output"] = run.output
    elif run.error:
        data["error"] = run.error
    return data


def execute_run(
    *,
    run: Run,
    emit: Callable[[str, dict[str, Any]], Any],
    resolver: CredentialResolver | None = None,
    is_canceled: Callable[[], bool] | None = None,
    files: list[dict[str, Any]] | None = None,
) -> RunResult:
    """Execute `run` (status `started`) with the engine and copy the masked result onto it (unsaved)."""
    if files is None and run.file_ids:
        from .files import file_descriptors

        files = file_descriptors(app_id=run.app_id, file_ids=run.file_ids)
    result = execute(
        definition=run.workflow_version.definition,
        run_input=run.input,
        resolver=resolver or default_resolver(),
        context=RunContext(app_id=str(run.app_id), user_id=run.user_id or None, run_id=str(run.id), files=files or []),
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
    )
    run.status = {"completed": Run.Status.COMPLETED, "failed": Run.Status.FAILED, "canceled": Run.Status.CANCELED}[
        result.status
    ]
    run.output = result.output if result.status == "completed" else None
    run.error = result.error
    run.nodes = _node_summary(result)
    run.ended_at = timezone.now()
    return result


def _fingerprint(request: RunRequest) -> str:
    # The API sets it before uploads are stored (their digests are part of it); service callers get it here.
    return request.fingerprint or body_fingerprint(request)


def idempotent_run(*, app: App, request: RunRequest) -> Run | None:
    """The run started with this Idempotency-Key in this caller's scope within 24 h, if any (SPEC.md section
    12). The same key with another body is a 422; an older holder of the key lets go of it."""
    key = request.idempotency_key
    if not key:
        return None
    existing = Run.objects.filter(app=app, idempotency_scope=request.idempotency_scope, idempotency_key=key).first()
    if existing is None:
        return None
    if existing.created_at < timezone.now() - IDEMPOTENCY_WINDOW:
        Run.objects.filter(pk=existing.pk).update(idempotency_key="")
        return None
    if existing.request_fingerprint != _fingerprint(request):
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request body. Use a new key for a new request.",
            details={"Idempotency-Key": ["already used with a different body"], "run_id": str(existing.id)},
        )
    return existing


def new_run(*, app: App, request: RunRequest) -> Run:
    """An unsaved Run for the App's live deployment."""
    deployment = app.current_deployment
    if deployment is None:
        raise Conflict("The App has no deployed workflow version.")
    if len(request.idempotency_key) > 255:
        raise BadRequest("Invalid Idempotency-Key.", details={"Idempotency-Key": ["at most 255 characters"]})
    return Run(
        id=uuid.uuid4(), app=app, deployment=deployment, workflow_version=deployment.workflow_version,
        user_id=request.user_id, session_id=request.session_id, input=request.input, mode=request.mode,
        options=request.options, file_ids=request.file_ids, idempotency_key=request.idempotency_key,
        idempotency_scope=request.idempotency_scope if request.idempotency_key else "",
        request_fingerprint=_fingerprint(request) if request.idempotency_key else "",
        created_at=timezone.now(),
    )


def raise_for_rejected(run: Run, result: RunResult) -> None:
    """Map a run the engine refused, or failed on request (`error_on_node_failure`), to its API error."""
    code = (result.error or {}).get("code")
    if code == "invalid_input":
        raise BadRequest("The input does not match the workflow's input fields.", details={"input": result.error["details"]})
    if code == "requirements_unsatisfied":
        raise RequirementsUnsatisfied(
            "Some connections this workflow needs are not linked for this user. Mint a connect token and send "
            "the user to the hosted connect page.",
            details={**result.error["details"], "run_id": str(run.id)},
        )
    if code == "node_failed":
        raise NodeFailed(result.error["message"], details={**result.error["details"], "run_id": str(run.id)})


def run_sync(*, app: App, request: RunRequest, resolver: CredentialResolver | None = None) -> tuple[Run, bool]:
    """Run to completion in this request. Returns (run, replayed): replayed when the Idempotency-Key matched.

    Writes once, at the end: the run, its events and the credential audit row in one transaction.
    """
    existing = idempotent_run(app=app, request=request)
    if existing is not None:
        return existing, True
    run = new_run(app=app, request=request)
    run.status = Run.Status.STARTED
    run.started_at = timezone.now()
    run.attempts = 1
    if resolver is None:
        resolver = InProcessResolver(defer_audit=True) if not settings.CREDENTIALS_API_URL else default_resolver()
    write_audit = getattr(resolver, "write_pending_audit", lambda: None)
    audit_committed = False
    try:
        buffer = EventBuffer(run)
        buffer.emit("run.created", {"mode": run.mode})
        buffer.emit("run.started", {})
        result = execute_run(run=run, emit=buffer.emit, resolver=resolver)
        if (result.error or {}).get("code") == "invalid_input":
            raise_for_rejected(run, result)  # a bad request is not a run: nothing is stored (nothing was resolved)
        buffer.emit(f"run.{run.status}", terminal_event_data(run))
        try:
            with transaction.atomic():
                write_audit()
                run.save(force_insert=True)
                buffer.flush()
            audit_committed = True
        except IntegrityError:
            # Two requests with the same Idempotency-Key raced; the other one's run stands.
            existing = idempotent_run(app=app, request=request)
            if existing is None:
                raise
            return existing, True
    finally:
        if not audit_committed:
            # Credentials may have been resolved (and sent upstream) even if the run was not stored:
            # the audit row is written on its own then.
            write_audit()
    raise_for_rejected(run, result)
    return run, False


def check_input(*, app: App, run_input: dict[str, Any]) -> None:
    """Refuse input that does not fit the deployed version's input node before a run is accepted for later
    execution (a synchronous run gets the same answer from the engine)."""
    deployment = app.current_deployment
    if deployment is None:
        raise Conflict("The App has no deployed workflow version.")
    errors = check_run_input(deployment.workflow_version.definition, run_input)
    if errors:
        raise BadRequest("The input does not match the workflow's input fields.", details={"input": errors})


def run_accept(*, app: App, request: RunRequest) -> tuple[Run, bool]:
    """Persist a run for later execution: status `created`, event `run.created`, callback deliveries, in one
    transaction. Returns (run, replayed): replayed when the Idempotency-Key matched a run of the last 24 h.
    The caller queues it (`transaction.on_commit`) or executes it itself (stream)."""
    from .callbacks import deliveries_create

    existing = idempotent_run(app=app, request=request)
    if existing is not None:
        return existing, True
    check_input(app=app, run_input=request.input)
    run = new_run(app=app, request=request)
    try:
        with transaction.atomic():
            run.save(force_insert=True)
            RunEvent.objects.create(run=run, sequence=1, type="run.created",
                                    data={"mode": run.mode, "run_id": str(run.id)}, timestamp=run.created_at)
            if request.callbacks:
                deliveries_create(run=run, callbacks=request.callbacks)
            if run.mode in (Run.Mode.BACKGROUND, Run.Mode.ASYNC):
                from .executors import enqueue_run

                transaction.on_commit(lambda: enqueue_run(run.id))
    except IntegrityError:
        existing = idempotent_run(app=app, request=request)
        if existing is None:
            raise
        return existing, True
    return run, False


def serialize_run(run: Run) -> dict[str, Any]:
    return {
        "id": str(run.id),
        "app_id": str(run.app_id),
        "status": run.status,
        "input": run.input,
        "output": run.output,
        "error": run.error,
        "user_id": run.user_id or None,
        "session_id": run.session_id or None,
        "created_at": rfc3339(run.created_at),
        "started_at": rfc3339(run.started_at),
        "ended_at": rfc3339(run.ended_at),
        "nodes": run.nodes,
    }


def serialize_event(event: RunEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "type": event.type,
        "sequence": event.sequence,
        "timestamp": rfc3339(event.timestamp),
        "data": event.data,
    }
