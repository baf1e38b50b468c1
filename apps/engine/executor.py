"""Run one workflow definition: resolve credentials once, then run the DAG and return a masked RunResult.

Scheduling: nodes run in topological order (definition order among equals). A node starts as soon as all
its dependencies succeeded; a node with a failed or skipped dependency is skipped. When only one node is
ready it runs on the calling thread (a linear workflow never pays for threads); a thread pool is created
only when independent branches are ready together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import httpx
from jinja2 import TemplateError

from .errors import NodeError, RunCanceled
from .masking import Masker, connection_secrets
from .netguard import BlockedAddressError
from .nodes import RUNNERS, NodeEnv, validate_input
from .refs import collect_references
from .templating import use_limits
from .types import CredentialResolver, NodeResult, ResolvedConnection, RunContext, RunOptions, RunResult

MAX_PARALLEL_NODES = 8
EventCallback = Callable[[str, dict], None]


class DefinitionError(ValueError):
    pass


def _now_ms() -> float:
    return time.monotonic() * 1000.0


def _graph(definition: Any) -> tuple[dict[str, Mapping[str, Any]], dict[str, list[str]], list[str]]:
    """(nodes by id, dependencies by id, topological order). Stable: definition order among equals."""
    if not isinstance(definition, Mapping) or not isinstance(definition.get("nodes"), list):
        raise DefinitionError("The definition must be an object with a list of nodes")
    nodes: dict[str, Mapping[str, Any]] = {}
    for node in definition["nodes"]:
        if not isinstance(node, Mapping) or not isinstance(node.get("id"), str) or not node["id"]:
            raise DefinitionError("Every node needs a string id")
        if node["id"] in nodes:
            raise DefinitionError(f"Duplicate node id {node['id']!r}")
        if node.get("type") not in RUNNERS:
            raise DefinitionError(f"Node {node['id']!r} has an unknown type {node.get('type')!r}")
        nodes[node["id"]] = node
    deps: dict[str, list[str]] = {}
    for node_id, node in nodes.items():
        depends_on = node.get("depends_on") or []
        if not isinstance(depends_on, list) or any(d not in nodes for d in depends_on):
            raise DefinitionError(f"Node {node_id!r} depends on an unknown node")
        deps[node_id] = list(dict.fromkeys(depends_on))
    order: list[str] = []
    placed: set[str] = set()
    pending = list(nodes)
    while pending:
        progress = [n for n in pending if all(d in placed for d in deps[n])]
        if not progress:
            raise DefinitionError("depends_on has a cycle")
        for n in progress:
            order.append(n)
            placed.add(n)
        pending = [n for n in pending if n not in placed]
    return nodes, deps, order


def _error_dict(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, NodeError):
        return exc.as_dict()
    if isinstance(exc, BlockedAddressError):
        # One code and one message whether the name did not resolve or resolved to a forbidden address.
        return {"type": exc.code, "message": str(exc)}
    if isinstance(exc, httpx.TimeoutException):
        return {"type": "timeout", "message": f"The request timed out ({type(exc).__name__})"}
    if isinstance(exc, httpx.HTTPError):
        return {"type": "connection_error", "message": str(exc) or type(exc).__name__}
    if isinstance(exc, TemplateError):
        return {"type": "template_error", "message": str(exc) or type(exc).__name__}
    return {"type": "internal_error", "message": f"{type(exc).__name__}: {exc}"}


class RunState:
    """What node runners may use for one run. Thread-safe where branches run concurrently."""

    def __init__(
        self,
        *,
        resolver: CredentialResolver,
        context: RunContext,
        options: RunOptions,
        http_client: httpx.Client,
        masker: Masker,
        on_event: EventCallback | None,
        is_canceled: Callable[[], bool] | None,
        db_connect: Callable | None,
        allow_private_network: bool,
    ) -> None:
        self.resolver = resolver
        self.context = context
        self.options = options
        self.http_client = http_client
        self.masker = masker
        self.on_event = on_event
        self.is_canceled = is_canceled
        self.db_connect = db_connect
        self.allow_private_network = allow_private_network
        self.input_value: dict[str, Any] = {}
        self._event_lock = threading.Lock()
        self._masker_lock = threading.Lock()

    def emit(self, type: str, data: dict, *, masked: bool = False) -> None:
        if self.on_event is None:
            return
        payload = data if masked else self.masker.mask(data)
        with self._event_lock:  # never two callbacks at once, even from concurrent branches
            self.on_event(type, payload)

    def canceled(self) -> bool:
        return bool(self.is_canceled and self.is_canceled())

    def unauthorized(self, connection: ResolvedConnection) -> ResolvedConnection | None:
        replacement = self.resolver.on_unauthorized(connection=connection, run_id=self.context.run_id)
        if replacement is not None:
            with self._masker_lock:  # a refreshed token is a new secret to mask
                self.masker = self.masker.extended(connection_secrets(replacement))
        return replacement


def _failed(code: str, message: str, details: dict | None = None, nodes: dict | None = None) -> RunResult:
    return RunResult(
        status="failed", output=None, error={"code": code, "message": message, "details": details or {}},
        nodes=nodes or {},
    )


def execute(
    *,
    definition: dict,
    run_input: dict,
    resolver: CredentialResolver,
    context: RunContext,
    options: RunOptions,
    http_client: httpx.Client,
    on_event: EventCallback | None = None,
    is_canceled: Callable[[], bool] | None = None,
    db_connect: Callable | None = None,
    allow_private_network: bool = False,
) -> RunResult:
    """Run `definition` with `run_input`. Never raises for node problems; returns a masked RunResult.

    Calls `resolver.resolve` exactly once, before any node runs (this is the run's only credential
    round-trip). Events go to `on_event(type, data)` (node.* and llm.delta; the caller emits run.*).
    `is_canceled` is polled between nodes and between streamed LLM chunks: keep it cheap.
    """
    try:
        nodes, deps, order = _graph(definition)
    except DefinitionError as exc:
        return _failed("invalid_definition", str(exc))

    input_ids = [n for n in order if nodes[n]["type"] == "input"]
    output_ids = [n for n in order if nodes[n]["type"] == "output"]
    input_fields = nodes[input_ids[0]].get("fields") if input_ids else None
    input_value, input_errors = validate_input(input_fields, run_input)
    if input_errors:
        return _failed("invalid_input", "The input does not match the workflow's input fields", input_errors)
    if input_ids and (not isinstance(input_fields, Mapping) or "files" not in input_fields):
        input_value["files"] = list(context.files)

    connection_ids, requirement_ids = collect_references(definition)
    resolution = resolver.resolve(
        connection_ids=connection_ids,
        requirement_ids=requirement_ids,
        app_id=context.app_id,
        user_id=context.user_id,
        run_id=context.run_id,
    )
    if resolution.unsatisfied:
        return _failed(
            "requirements_unsatisfied",
            "Some connections this workflow needs are not linked for this user",
            {"unsatisfied": list(resolution.unsatisfied)},
        )

    run = RunState(
        resolver=resolver,
        context=context,
        options=options,
        http_client=http_client,
        masker=Masker.for_connections(resolution.all_connections()),
        on_event=on_event,
        is_canceled=is_canceled,
        db_connect=db_connect,
        allow_private_network=allow_private_network,
    )
    run.input_value = run.masker.mask(input_value)

    results: dict[str, NodeResult] = {}
    nodes_ctx: dict[str, dict[str, Any]] = {}
    ctx_lock = threading.Lock()

    def connection_for(node: Mapping[str, Any]) -> ResolvedConnection | None:
        ref = node.get("connection")
        if not ref:
            return None
        if isinstance(ref, Mapping) and ref.get("id"):
            found = resolution.connections.get(str(ref["id"]))
        elif isinstance(ref, Mapping) and ref.get("requirement"):
            found = resolution.requirements.get(str(ref["requirement"]))
        else:
            raise NodeError("invalid_config", "connection must be {\"id\": ...} or {\"requirement\": ...}")
        if found is None:
            raise NodeError("connection_unavailable", "The node's connection could not be resolved")
        return found

    def run_node(node_id: str) -> NodeResult:
        node = nodes[node_id]
        node_type = node["type"]
        started = _now_ms()
        run.emit("node.started", {"node_id": node_id, "type": node_type}, masked=True)
        env: NodeEnv | None = None
        try:
            with ctx_lock:
                template_ctx = {"input": run.input_value, "nodes": dict(nodes_ctx)}
            env = NodeEnv(node=node, context=template_ctx, connection=connection_for(node), run=run)
            with use_limits(options.template_limits):  # every render in this node gets its own budget
                raw_output = RUNNERS[node_type](env)
            output = run.masker.mask(raw_output)  # read run.masker after: a 401 retry may have extended it
        except RunCanceled:
            raise
        except Exception as exc:  # every node problem becomes a failure, never a traceback
            error = run.masker.mask(_error_dict(exc))
            provenance = env.connection.provenance() if env and env.connection else None
            result = NodeResult("failure", None, error, provenance, started, _now_ms())
            run.emit("node.failed", {"node_id": node_id, "type": node_type, "error": error}, masked=True)
            return result
        provenance = env.connection.provenance() if env.connection else None
        result = NodeResult("success", output, None, provenance, started, _now_ms())
        run.emit(
            "node.completed",
            {"node_id": node_id, "type": node_type, "output": output, "duration_ms": result.duration_ms},
            masked=True,
        )
        return result

    def record(node_id: str, result: NodeResult) -> None:
        results[node_id] = result
        with ctx_lock:
            nodes_ctx[node_id] = {"output": result.output, "status": result.status, "error": result.error}

    def skip(node_id: str, reason: str) -> None:
        record(node_id, NodeResult("skipped"))
        run.emit("node.skipped", {"node_id": node_id, "type": nodes[node_id]["type"], "reason": reason}, masked=True)

    canceled = False
    stop = False  # cancel, or a failure with error_on_node_failure: start nothing new
    remaining = list(order)
    running: dict[Future, str] = {}
    pool: ThreadPoolExecutor | None = None

    def finish(node_id: str, outcome: Callable[[], NodeResult]) -> None:
        nonlocal canceled, stop
        try:
            result = outcome()
        except RunCanceled:
            canceled = stop = True
            error = {"type": "canceled", "message": "The run was canceled"}
            result = NodeResult("failure", None, error, None, None, _now_ms())
            run.emit("node.failed", {"node_id": node_id, "type": nodes[node_id]["type"], "error": error}, masked=True)
        record(node_id, result)
        if result.status == "failure" and options.error_on_node_failure:
            stop = True

    try:
        while remaining or running:
            if not stop and remaining and run.canceled():
                canceled = stop = True
            ready: list[str] = []
            for node_id in list(remaining):
                if stop:
                    remaining.remove(node_id)
                    skip(node_id, "canceled" if canceled else "run_failed")
                    continue
                node_deps = deps[node_id]
                if not all(d in results for d in node_deps):
                    continue
                remaining.remove(node_id)
                if any(results[d].status != "success" for d in node_deps):
                    skip(node_id, "dependency_not_successful")
                else:
                    ready.append(node_id)
            if not ready and not running:
                break
            if len(ready) == 1 and not running:
                node_id = ready[0]
                finish(node_id, lambda node_id=node_id: run_node(node_id))
                continue
            if ready:
                if pool is None:
                    pool = ThreadPoolExecutor(max_workers=MAX_PARALLEL_NODES, thread_name_prefix="engine-node")
                for node_id in ready:
                    running[pool.submit(run_node, node_id)] = node_id
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                finish(running.pop(future), future.result)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)

    for node_id in order:  # anything never reached (should not happen, but the result must be complete)
        results.setdefault(node_id, NodeResult("skipped"))
    ordered = {node_id: results[node_id] for node_id in order}

    if canceled:
        error = {"code": "canceled", "message": "The run was canceled", "details": {}}
        return RunResult(status="canceled", output=None, error=error, nodes=ordered)

    failures = sorted(
        ((r.ended or 0.0, node_id) for node_id, r in ordered.items() if r.status == "failure"),
    )
    if failures and options.error_on_node_failure:
        node_id = failures[0][1]
        error = ordered[node_id].error or {}
        return _failed(
            "node_failed",
            run.masker.mask_text(f"Node {node_id} failed: {error.get('message', 'unknown error')}"),
            {"node_id": node_id, "type": error.get("type")},
            ordered,
        )

    if options.last_node_output:
        output = _last_output(ordered, deps, output_ids, input_ids)
    elif output_ids:
        output = ordered[output_ids[0]].output
    else:
        output = None
    return RunResult(status="completed", output=output, error=None, nodes=ordered)


def _last_output(
    results: dict[str, NodeResult], deps: dict[str, list[str]], output_ids: list[str], input_ids: list[str]
) -> Any:
    """The output of the last node to finish before the output node: among the output node's dependencies
    (every non-output node when there is none), the successful one that ended last."""
    candidates = deps[output_ids[0]] if output_ids else [n for n in results if n not in output_ids]
    finished = [(results[n].ended or 0.0, n) for n in candidates if results[n].status == "success"]
    if not finished:
        return None
    non_input = [item for item in finished if item[1] not in input_ids]
    return results[max(non_input or finished)[1]].output
