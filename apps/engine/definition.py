"""A workflow definition's shape (SPEC.md section 4), checked without a database.

`check_definition` finds every shape problem of a definition to be saved, keyed by a path into it
(`nodes.2.config.headers.Authorization`) so a client can point at the offending field, and collects the
connection/requirement references whose existence the caller checks. `run_graph` is what the executor
needs to schedule a definition, and `topological_order` the one topological sort of the project.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any, NamedTuple

from .errors import PathErrors
from .inline_credentials import scan_config, scan_secret_parameters
from .nodes import NODE_TYPES, REGISTRY, validate_input
from .nodes import get as get_node_type
from .nodes.base import Connection

TOP_LEVEL_FIELDS = frozenset({"nodes", "name", "description", "metadata"})
NODE_FIELDS = frozenset({"id", "type", "depends_on", "connection", "config", "fields", "name"})
NODE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


class DefinitionError(ValueError):
    """A definition the executor cannot schedule (a saved version never is one: it passed `check_definition`)."""


class NodeRef(NamedTuple):
    index: int  # the node's position in `nodes`, for error paths
    node_type: str
    ref_id: str  # a normalized UUID


@dataclass
class DefinitionShape:
    errors: PathErrors = field(default_factory=PathErrors)
    # The definition is not even an object with a node list: nothing else was checked.
    unreadable: bool = False
    connection_refs: list[NodeRef] = field(default_factory=list)
    requirement_refs: list[NodeRef] = field(default_factory=list)


def topological_order(deps: Mapping[str, Iterable[str]], *, rank: Mapping[str, int] | None = None) -> list[str]:
    """Nodes in dependency order, one generation at a time, `rank` order (default: `deps` order) among the
    nodes of a generation. Raises graphlib.CycleError."""
    position = rank if rank is not None else {node: index for index, node in enumerate(deps)}
    sorter = TopologicalSorter(deps)
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        generation = sorted(sorter.get_ready(), key=lambda node: position.get(node, len(position)))
        order.extend(generation)
        sorter.done(*generation)
    return order


def _cycle_nodes(deps: Mapping[str, list[str]]) -> list[str]:
    """Every node on a cycle (CycleError reports one cycle: drop its nodes and look again)."""
    remaining = {node: list(node_deps) for node, node_deps in deps.items()}
    found: set[str] = set()
    while True:
        try:
            TopologicalSorter(remaining).prepare()
        except CycleError as exc:
            cycle = set(exc.args[1])
            found |= cycle
            remaining = {n: [d for d in ds if d not in cycle] for n, ds in remaining.items() if n not in cycle}
            continue
        return sorted(found)


def _as_uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        return None


def _check_graph(nodes: list[Mapping], errors: PathErrors) -> None:
    ids = {n["id"] for n in nodes if isinstance(n.get("id"), str)}
    edges: dict[str, list[str]] = {}
    for index, node in enumerate(nodes):
        deps = node.get("depends_on", [])
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            errors.add(f"nodes.{index}.depends_on", "must be a list of node IDs")
            if isinstance(node.get("id"), str):
                edges[node["id"]] = []  # still a node others may depend on
            continue
        for dep in deps:
            if dep not in ids:
                errors.add(f"nodes.{index}.depends_on", f"unknown node '{dep}'")
            if dep == node.get("id"):
                errors.add(f"nodes.{index}.depends_on", "a node cannot depend on itself")
        if isinstance(node.get("id"), str):
            edges[node["id"]] = [d for d in deps if d in ids]
    try:
        TopologicalSorter(edges).prepare()
    except CycleError:
        # Name the cycles, not every node downstream of them.
        errors.add("nodes", f"depends_on forms a cycle through: {', '.join(_cycle_nodes(edges))}")


def _check_connection_ref(node: Mapping, node_type: str, index: int, shape: DefinitionShape) -> None:
    path = f"nodes.{index}"
    declared = REGISTRY[node_type]
    ref = node.get("connection")
    if ref is None:
        if declared.connection is Connection.REQUIRED:
            shape.errors.add(f"{path}.connection", f"a {node_type} node needs a connection")
        return
    if declared.connection is Connection.NONE:
        shape.errors.add(f"{path}.connection", f"a {node_type} node takes no connection")
        return
    if not isinstance(ref, Mapping) or len(ref) != 1 or not ({"id", "requirement"} & set(ref)):
        shape.errors.add(
            f"{path}.connection", "must be {\"id\": <connection id>} or {\"requirement\": <requirement id>}"
        )
        return
    key = "id" if "id" in ref else "requirement"
    ref_id = _as_uuid(ref[key])
    if ref_id is None:
        shape.errors.add(f"{path}.connection.{key}", "must be a UUID")
    elif key == "id":
        shape.connection_refs.append(NodeRef(index, node_type, ref_id))
    else:
        shape.requirement_refs.append(NodeRef(index, node_type, ref_id))


def check_definition(definition: Any) -> DefinitionShape:
    """Every shape problem of `definition` (ids, exactly one input and one output, known node types and
    fields, per-type shape, inline credentials, the depends_on DAG, connection references)."""
    shape = DefinitionShape()
    errors = shape.errors
    if not isinstance(definition, Mapping) or not isinstance(definition.get("nodes"), list):
        errors.add("definition", "must be an object with a 'nodes' list")
        shape.unreadable = True
        return shape
    for key in sorted(set(definition) - TOP_LEVEL_FIELDS):
        errors.add(f"definition.{key}", "unknown top-level field")
    nodes: list = definition["nodes"]
    if not nodes:
        errors.add("nodes", "a workflow needs at least an input and an output node")
    seen_ids: set[str] = set()
    counts = {"input": 0, "output": 0}
    for index, node in enumerate(nodes):
        path = f"nodes.{index}"
        if not isinstance(node, Mapping):
            errors.add(path, "must be an object")
            continue
        node_id, node_type = node.get("id"), node.get("type")
        if not isinstance(node_id, str) or not NODE_ID.fullmatch(node_id):
            errors.add(f"{path}.id", "must be a name of letters, digits, '_' or '-' (starting with a letter or '_')")
        elif node_id in seen_ids:
            errors.add(f"{path}.id", f"duplicate node id '{node_id}'")
        else:
            seen_ids.add(node_id)
        if not isinstance(node_type, str) or node_type not in REGISTRY:
            errors.add(f"{path}.type", f"unknown node type '{node_type}'; known: {', '.join(NODE_TYPES)}")
            continue
        if node_type in counts:
            counts[node_type] += 1
        for key in sorted(set(node) - NODE_FIELDS):
            errors.add(f"{path}.{key}", "unknown node field")
        config = node.get("config", {})
        if not isinstance(config, Mapping):
            errors.add(f"{path}.config", "must be an object")
            config = {}
        scan_config(config, f"{path}.config", errors)
        if node_type == "http":
            scan_secret_parameters(config, path, errors)
        REGISTRY[node_type].check_shape(node, config, path, errors)
        _check_connection_ref(node, node_type, index, shape)
    for node_type, count in counts.items():
        if count != 1:
            errors.add("nodes", f"exactly one '{node_type}' node is required (found {count})")
    _check_graph([n for n in nodes if isinstance(n, Mapping)], errors)
    return shape


# --- what the executor needs ----------------------------------------------------------------------------


@dataclass
class RunGraph:
    nodes: dict[str, Mapping[str, Any]]  # by id, definition order
    deps: dict[str, list[str]]  # by id, each without duplicates
    order: list[str]  # topological, definition order among equals

    def ids_of_type(self, node_type: str) -> list[str]:
        return [n for n in self.order if self.nodes[n]["type"] == node_type]


def run_graph(definition: Any) -> RunGraph:
    """The graph the executor schedules, or DefinitionError for a definition it cannot run."""
    if not isinstance(definition, Mapping) or not isinstance(definition.get("nodes"), list):
        raise DefinitionError("The definition must be an object with a list of nodes")
    nodes: dict[str, Mapping[str, Any]] = {}
    for node in definition["nodes"]:
        if not isinstance(node, Mapping) or not isinstance(node.get("id"), str) or not node["id"]:
            raise DefinitionError("Every node needs a string id")
        if node["id"] in nodes:
            raise DefinitionError(f"Duplicate node id {node['id']!r}")
        if get_node_type(node.get("type")) is None:
            raise DefinitionError(f"Node {node['id']!r} has an unknown type {node.get('type')!r}")
        nodes[node["id"]] = node
    deps: dict[str, list[str]] = {}
    for node_id, node in nodes.items():
        depends_on = node.get("depends_on") or []
        if not isinstance(depends_on, list) or any(d not in nodes for d in depends_on):
            raise DefinitionError(f"Node {node_id!r} depends on an unknown node")
        deps[node_id] = list(dict.fromkeys(depends_on))
    try:
        order = topological_order(deps)
    except CycleError as exc:
        raise DefinitionError("depends_on has a cycle") from exc
    return RunGraph(nodes, deps, order)


def check_run_input(definition: Any, run_input: Any) -> dict[str, list[str]]:
    """Errors by field of `run_input` against the definition's input node (empty when it fits)."""
    nodes = (definition or {}).get("nodes") or []
    fields = next((n.get("fields") for n in nodes if isinstance(n, dict) and n.get("type") == "input"), None)
    return validate_input(fields, run_input)[1]
