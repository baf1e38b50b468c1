"""Run one workflow definition: resolve credentials once, then run the DAG and return a masked RunResult.

Scheduling (`RunScheduler`, over graphlib's prepare/get_ready/done protocol): nodes start in topological
order (definition order among equals). A node starts as soon as all its dependencies succeeded; a node with
a failed or skipped dependency is skipped. When only one node is ready it runs on the calling thread (a
linear workflow never pays for threads); a thread pool is created only when independent branches are
ready together.
"""

from __future__ import annotations

import contextvars
import heapq
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from functools import partial
from graphlib import TopologicalSorter
from typing import Any

import httpx
from jinja2 import TemplateError

from .definition import DefinitionError, RunGraph, run_graph
from .errors import NodeError, RunCanceled
from .masking import Masker
from .netguard import BlockedAddressError
from .nodes import RUNNERS, validate_input
from .refs import collect_references
from .state import EventCallback, NodeEnv, RunState
from .templating import use_limits
from .types import CredentialResolver, NodeResult, Resolution, ResolvedConnection, RunContext, RunOptions, RunResult

MAX_PARALLEL_NODES = 8

__all__ = ["MAX_PARALLEL_NODES", "DefinitionError", "EventCallback", "RunScheduler", "RunState", "execute"]


def _now_ms() -> float:
    return time.monotonic() * 1000.0


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


def _failed(code: str, message: str, details: dict | None = None, nodes: dict | None = None) -> RunResult:
    return RunResult(
        status="failed", output=None, error={"code": code, "message": message, "details": details or {}},
        nodes=nodes or {},
    )


class RunScheduler:
    """Runs the nodes of one graph for one run; `run()` returns every node's result in topological order.

    Stops starting nodes on cancel, or on the first failure when `options.error_on_node_failure`: what was
    not started is skipped (reason `canceled` / `run_failed`), what runs is waited for.
    """

    def __init__(self, *, graph: RunGraph, state: RunState, resolution: Resolution) -> None:
        self.graph = graph
        self.state = state
        self.resolution = resolution
        self.results: dict[str, NodeResult] = {}
        self.canceled = False
        self.stop = False  # cancel, or a failure with error_on_node_failure: start nothing new
        self._nodes_ctx: dict[str, dict[str, Any]] = {}
        self._ctx_lock = threading.Lock()
        self._position = {node_id: index for index, node_id in enumerate(graph.order)}
        self._unstarted: dict[str, None] = dict.fromkeys(graph.order)  # neither started nor skipped
        self._sorter: TopologicalSorter[str] = TopologicalSorter(graph.deps)

    def run(self) -> dict[str, NodeResult]:
        self._sorter.prepare()
        running: dict[Future, str] = {}
        pool: ThreadPoolExecutor | None = None
        try:
            while self._unstarted or running:
                if not self.stop and self._unstarted and self.state.canceled():
                    self.canceled = self.stop = True
                ready = self._take_ready()
                if not ready and not running:
                    break
                if len(ready) == 1 and not running:
                    self._finish(ready[0], partial(self._run_node, ready[0]))
                    continue
                if ready:
                    if pool is None:
                        pool = ThreadPoolExecutor(max_workers=MAX_PARALLEL_NODES, thread_name_prefix="engine-node")
                    for node_id in ready:
                        # In the caller's context (contextvars: the platform's log context names the run).
                        running[pool.submit(contextvars.copy_context().run, self._run_node, node_id)] = node_id
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    self._finish(running.pop(future), future.result)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        for node_id in self.graph.order:  # anything never reached (should not happen, but the result must be complete)
            self.results.setdefault(node_id, NodeResult("skipped"))
        return {node_id: self.results[node_id] for node_id in self.graph.order}

    def _take_ready(self) -> list[str]:
        """The nodes to start now, in topological order; skips (in that order) what cannot start."""
        if self.stop:
            for node_id in self._unstarted:
                self._skip(node_id, "canceled" if self.canceled else "run_failed")
            self._unstarted.clear()
            return []
        # Lowest position first: a node skipped here makes its dependants ready, and they come after it.
        candidates = [(self._position[n], n) for n in self._sorter.get_ready()]
        heapq.heapify(candidates)
        ready: list[str] = []
        while candidates:
            _, node_id = heapq.heappop(candidates)
            del self._unstarted[node_id]
            if any(self.results[d].status != "success" for d in self.graph.deps[node_id]):
                self._skip(node_id, "dependency_not_successful")
                self._sorter.done(node_id)
                for dependant in self._sorter.get_ready():
                    heapq.heappush(candidates, (self._position[dependant], dependant))
            else:
                ready.append(node_id)
        return ready

    def _record(self, node_id: str, result: NodeResult) -> None:
        self.results[node_id] = result
        with self._ctx_lock:
            self._nodes_ctx[node_id] = {"output": result.output, "status": result.status, "error": result.error}

    def _skip(self, node_id: str, reason: str) -> None:
        self._record(node_id, NodeResult("skipped"))
        node_type = self.graph.nodes[node_id]["type"]
        self.state.emit("node.skipped", {"node_id": node_id, "type": node_type, "reason": reason}, masked=True)

    def _finish(self, node_id: str, outcome: Callable[[], NodeResult]) -> None:
        try:
            result = outcome()
        except RunCanceled:
            self.canceled = self.stop = True
            error = {"type": "canceled", "message": "The run was canceled"}
            result = NodeResult("failure", None, error, None, None, _now_ms())
            node_type = self.graph.nodes[node_id]["type"]
            self.state.emit("node.failed", {"node_id": node_id, "type": node_type, "error": error}, masked=True)
        self._record(node_id, result)
        self._sorter.done(node_id)
        if result.status == "failure" and self.state.options.error_on_node_failure:
            self.stop = True

    def _connection_for(self, node: Mapping[str, Any]) -> ResolvedConnection | None:
        ref = node.get("connection")
        if not ref:
            return None
        if isinstance(ref, Mapping) and ref.get("id"):
            found = self.resolution.connections.get(str(ref["id"]))
        elif isinstance(ref, Mapping) and ref.get("requirement"):
            found = self.resolution.requirements.get(str(ref["requirement"]))
        else:
            raise NodeError("invalid_config", "connection must be {\"id\": ...} or {\"requirement\": ...}")
        if found is None:
            raise NodeError("connection_unavailable", "The node's connection could not be resolved")
        return found

    def _run_node(self, node_id: str) -> NodeResult:
        """Run one node; every node problem becomes a masked failure (only RunCanceled propagates)."""
        state = self.state
        node = self.graph.nodes[node_id]
        node_type = node["type"]
        started = _now_ms()
        state.emit("node.started", {"node_id": node_id, "type": node_type}, masked=True)
        env: NodeEnv | None = None
        try:
            with self._ctx_lock:
                template_ctx = {"input": state.input_value, "nodes": dict(self._nodes_ctx)}
            env = NodeEnv(node=node, context=template_ctx, connection=self._connection_for(node), run=state)
            with use_limits(state.options.template_limits):  # every render in this node gets its own budget
                raw_output = RUNNERS[node_type](env)
            output = state.masker.mask(raw_output)  # read state.masker after: a 401 retry may have extended it
        except RunCanceled:
            raise
        except Exception as exc:  # every node problem becomes a failure, never a traceback
            error = state.masker.mask(_error_dict(exc))
            provenance = env.connection.provenance() if env and env.connection else None
            result = NodeResult("failure", None, error, provenance, started, _now_ms())
            state.emit("node.failed", {"node_id": node_id, "type": node_type, "error": error}, masked=True)
            return result
        provenance = env.connection.provenance() if env.connection else None
        result = NodeResult("success", output, None, provenance, started, _now_ms())
        state.emit(
            "node.completed",
            {"node_id": node_id, "type": node_type, "output": output, "duration_ms": result.duration_ms},
            masked=True,
        )
        return result


_PREPARED_MAX = 512
_prepared_by_key: dict[str, tuple[RunGraph, tuple[list[str], list[str]]]] = {}


def _prepared(definition: dict, key: str | None) -> tuple[RunGraph, tuple[list[str], list[str]]]:
    """The schedulable graph and the references of `definition`, computed once per `key` in this process.
    A key must name one definition forever (an immutable workflow version's ID); without one, computed."""
    prepared = _prepared_by_key.get(key) if key is not None else None
    if prepared is None:
        prepared = (run_graph(definition), collect_references(definition))
        if key is not None:
            if len(_prepared_by_key) >= _PREPARED_MAX:
                _prepared_by_key.pop(next(iter(_prepared_by_key), None), None)
            _prepared_by_key[key] = prepared
    return prepared


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
    definition_key: str | None = None,
) -> RunResult:
    """Run `definition` with `run_input`. Never raises for node problems; returns a masked RunResult.

    Calls `resolver.resolve` exactly once, before any node runs (this is the run's only credential
    round-trip). Events go to `on_event(type, data)` (node.* and llm.delta; the caller emits run.*).
    `is_canceled` is polled between nodes and between streamed LLM chunks: keep it cheap.
    `definition_key`: names this exact definition forever (an immutable version's ID), so its graph is
    prepared once per process; the definition must then not be mutated by anyone.
    """
    try:
        graph, (connection_ids, requirement_ids) = _prepared(definition, definition_key)
    except DefinitionError as exc:
        return _failed("invalid_definition", str(exc))

    input_ids, output_ids = graph.ids_of_type("input"), graph.ids_of_type("output")
    input_fields = graph.nodes[input_ids[0]].get("fields") if input_ids else None
    input_value, input_errors = validate_input(input_fields, run_input)
    if input_errors:
        return _failed("invalid_input", "The input does not match the workflow's input fields", input_errors)
    if input_ids and (not isinstance(input_fields, Mapping) or "files" not in input_fields):
        input_value["files"] = list(context.files)

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

    state = RunState(
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
    state.input_value = state.masker.mask(input_value)
    scheduler = RunScheduler(graph=graph, state=state, resolution=resolution)
    ordered = scheduler.run()
    return _run_result(scheduler, ordered, output_ids, input_ids)


def _run_result(
    scheduler: RunScheduler, ordered: dict[str, NodeResult], output_ids: list[str], input_ids: list[str]
) -> RunResult:
    options = scheduler.state.options
    if scheduler.canceled:
        error = {"code": "canceled", "message": "The run was canceled", "details": {}}
        return RunResult(status="canceled", output=None, error=error, nodes=ordered)

    failures = sorted(
        ((r.ended or 0.0, node_id) for node_id, r in ordered.items() if r.status == "failure"),
    )
    if failures and options.error_on_node_failure:
        return _node_failed(scheduler, ordered, failures[0][1])
    if output_ids and ordered[output_ids[0]].status != "success":
        # The output could not be computed: the run failed, because of the first failure upstream of it
        # (SPEC.md section 15), whatever `last_node_output` says.
        upstream = _upstream_of(output_ids[0], scheduler.graph.deps)
        blocking = [node_id for _, node_id in failures if node_id in upstream]
        if blocking:
            return _node_failed(scheduler, ordered, blocking[0])

    if options.last_node_output:
        output = _last_output(ordered, scheduler.graph.deps, output_ids, input_ids)
    elif output_ids:
        output = ordered[output_ids[0]].output
    else:
        output = None
    return RunResult(status="completed", output=output, error=None, nodes=ordered)


def _node_failed(scheduler: RunScheduler, ordered: dict[str, NodeResult], node_id: str) -> RunResult:
    """`failed` with `{"code": "node_failed", "message", "node_id", "type", "details": {"node_id", "type"}}`:
    the node's ID and error type at the top (SPEC.md section 15) and in `details` (the envelope's place, as
    the 502 of `error_on_node_failure` answers them)."""
    error = ordered[node_id].error or {}
    message = scheduler.state.masker.mask_text(f"Node {node_id} failed: {error.get('message', 'unknown error')}")
    where = {"node_id": node_id, "type": error.get("type")}
    return RunResult(
        status="failed", output=None, error={"code": "node_failed", "message": message, **where, "details": where},
        nodes=ordered,
    )


def _upstream_of(node_id: str, deps: Mapping[str, list[str]]) -> set[str]:
    """`node_id` and every node it depends on, directly or through others."""
    seen, pending = set(), [node_id]
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending.extend(deps.get(current, ()))
    return seen


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
