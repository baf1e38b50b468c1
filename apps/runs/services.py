"""Starting runs, for the App-host views: idempotency, a synchronous run (`run_sync`), accepting a run for
later execution (`run_accept`, then queued on the executor) and starting a streamed one (`run_stream_start`).

A synchronous run touches the database a constant number of times whatever the workflow's size:
credential resolution (apps.credentials, one batched round), then one INSERT of the finished run and
one bulk INSERT of its events, in one transaction. Background, async and streaming runs are accepted
by `run_accept` (persisted `created` before anything executes them) and executed by apps.runs.lifecycle,
which reuses `execute_run` (apps.runs.execution) with a sink that writes events as they happen.

Layers (each imports only those after it): requests → services → lifecycle → execution → callbacks →
dispatch; serializers and events below all of them; sse and the views above.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.core import log_context, metrics
from apps.core.errors import BadRequest, Conflict, IdempotencyKeyReused, NodeFailed, RequirementsUnsatisfied
from apps.core.rawsql import insert_together, instance_batch
from apps.deployments.models import App
from apps.engine import RunResult
from apps.engine.definition import check_run_input
from apps.engine.types import CredentialResolver

from .callbacks import deliveries_create
from .dispatch import submit
from .events import EventBuffer
from .execution import execute_run, make_resolver
from .lifecycle import Claim, claim_run, execute_claimed, execute_run_job
from .models import Run, RunEvent
from .requests import RunRequest, body_fingerprint
from .serializers import terminal_event_data

logger = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW = timedelta(hours=24)


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
    if code == "node_failed" and run.options.get("error_on_node_failure"):  # otherwise a failed run, answered 200
        raise NodeFailed(result.error["message"], details={**result.error["details"], "run_id": str(run.id)})


def run_sync(*, app: App, request: RunRequest, resolver: CredentialResolver | None = None,
             observe: Callable[[str, dict[str, Any]], None] | None = None) -> tuple[Run, bool]:
    """Run to completion in this request. Returns (run, replayed): replayed when the Idempotency-Key matched.

    Writes once, at the end: the run, its events and the credential audit row, all or nothing (one
    statement on PostgreSQL, one transaction elsewhere: apps.core.rawsql.insert_together).
    `observe(type, data)` sees each event as the engine emits it (already masked): the MCP endpoint turns
    them into progress notifications while the run is still going.
    """
    existing = idempotent_run(app=app, request=request)
    if existing is not None:
        return existing, True
    run = new_run(app=app, request=request)
    run.status = Run.Status.STARTED
    run.started_at = timezone.now()
    run.attempts = 1
    if resolver is None:
        resolver = make_resolver(defer_audit=True)
    write_audit = getattr(resolver, "write_pending_audit", lambda: None)
    audit_committed = False
    try:
        buffer = EventBuffer(run)
        buffer.emit("run.created", {"mode": run.mode})
        buffer.emit("run.started", {})
        emit = buffer.emit if observe is None else _teed(buffer.emit, observe)
        result = execute_run(run=run, emit=emit, resolver=resolver)
        if (result.error or {}).get("code") == "invalid_input":
            raise_for_rejected(run, result)  # a bad request is not a run: nothing is stored (nothing was resolved)
        buffer.emit(f"run.{run.status}", terminal_event_data(run))
        audit_batch = getattr(resolver, "pending_audit_batch", lambda: [])()
        try:
            # The audit row, the run and its events: all or nothing, in one statement on PostgreSQL.
            insert_together([*audit_batch, instance_batch([run]), buffer.batch()])
            run._state.adding = False
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
    metrics.run_ended(mode=run.mode, status=run.status, started_at=run.started_at, ended_at=run.ended_at)
    raise_for_rejected(run, result)
    return run, False


def _teed(emit: Callable[[str, dict[str, Any]], None],
          observe: Callable[[str, dict[str, Any]], None]) -> Callable[[str, dict[str, Any]], None]:
    def both(type: str, data: dict[str, Any]) -> None:
        emit(type, data)
        observe(type, data)

    return both


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
    Background and async runs are queued on commit; a stream run is executed by its request
    (`run_stream_start`)."""
    existing = idempotent_run(app=app, request=request)
    if existing is not None:
        return existing, True
    check_input(app=app, run_input=request.input)
    run = new_run(app=app, request=request)
    created = EventBuffer(run)
    created.emit("run.created", {"mode": run.mode, "run_id": str(run.id)}, timestamp=run.created_at)
    rows = [instance_batch([run]), created.batch()]
    queued = run.mode in (Run.Mode.BACKGROUND, Run.Mode.ASYNC)
    try:
        if request.callbacks:
            with transaction.atomic():
                insert_together(rows, savepoint=False)
                deliveries_create(run=run, callbacks=request.callbacks)
        else:
            insert_together(rows)  # the run and its first event, all or nothing (one statement on PostgreSQL)
        run._state.adding = False
        if queued:
            transaction.on_commit(lambda: enqueue_run(run.id))  # at once, unless the caller holds a transaction
    except IntegrityError:
        existing = idempotent_run(app=app, request=request)
        if existing is None:
            raise
        return existing, True
    return run, False


def enqueue_run(run_id) -> None:
    """Called on commit of the transaction that created the run. A broker that cannot be reached leaves
    the run `created` for recovery instead of failing the request that already accepted it."""
    try:
        submit(execute_run_job, run_id)
    except Exception:
        logger.exception("could not enqueue run %s; it stays created until recovered", run_id)


# How long a stream waits for the run to get past credential resolution before answering: long enough to
# turn `requirements_unsatisfied` into a 409 like a synchronous run, short enough never to stall a stream.
FIRST_EVENT_WAIT_SECONDS = 10.0


def run_stream_start(*, app: App, request: RunRequest) -> tuple[Run, queue.Queue | None]:
    """Accept a streamed run and execute it in a thread of this process (not the executor: the answer has to
    come from here, and a queue of background work must not delay an interactive stream). Returns the run
    and the queue its stored events are announced on (None for an Idempotency-Key repeat, or a run another
    attempt holds: then the stream reads the table alone).

    A client that disconnects does not stop the run: it ends, stored, and `GET /v1/runs/{id}/stream`
    resumes it. Unsatisfied requirements answer 409 like a synchronous run (the failed run is stored, as
    there)."""
    run, replayed = run_accept(app=app, request=request)
    if replayed:
        return run, None
    claim = claim_run(run.id)
    if not isinstance(claim, Claim):
        return run, None
    source: queue.Queue = queue.Queue()
    threading.Thread(target=log_context.carried(_execute_streamed), args=(claim, source),  # the request's log context
                     name=f"run-stream-{run.id}", daemon=True).start()
    _raise_if_unsatisfied(run, source)
    return run, source


def _execute_streamed(claim: Claim, source: queue.Queue) -> None:
    try:
        execute_claimed(claim, tee=source)
    finally:
        connection.close()  # a thread of its own: its connection would otherwise outlive it


def _raise_if_unsatisfied(run: Run, source: queue.Queue) -> None:
    """Peek (the queue only wakes readers; events are read from the table) until the run is past
    credential resolution. Unsatisfied requirements raise 409; anything else streams."""
    deadline = time.monotonic() + FIRST_EVENT_WAIT_SECONDS
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            item = source.get(timeout=remaining)
        except queue.Empty:
            return
        if not isinstance(item, RunEvent):
            source.put(item)  # end marker: leave it for the reader
            return
        if item.type == "run.started":
            continue
        if item.type == "run.failed" and (item.data.get("error") or {}).get("code") == "requirements_unsatisfied":
            error = item.data["error"]
            raise RequirementsUnsatisfied(
                "Some connections this workflow needs are not linked for this user. Mint a connect token and "
                "send the user to the hosted connect page.",
                details={**error.get("details", {}), "run_id": str(run.id)},
            )
        return
