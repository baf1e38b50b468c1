"""Definition validation on save (SPEC.md section 4). Errors are keyed by a path into the definition,
e.g. `nodes.2.config.headers.Authorization`, so a client can point at the offending field."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from apps.accounts.models import Project
from apps.core.errors import BadRequest
from apps.engine import connection_types

from .inline_credentials import credential_problem, url_placeholders

NODE_TYPES = ("input", "output", "http", "template", "llm", "sql")
# Node types that need a connection, and which may have one.
CONNECTION_REQUIRED = ("llm", "sql")
CONNECTION_ALLOWED = ("http", "llm", "sql")
FIELD_TYPES = ("string", "number", "integer", "boolean", "object", "array")
# Keys of node config (outside headers/params/data) that can only hold a credential. Narrower than
# the header rule so that ordinary keys such as `max_tokens` stay valid.
SECRET_CONFIG_KEY = re.compile(
    r"^(api[-_]?key|apikey|password|passwd|secret|client[-_]?secret|access[-_]?token|refresh[-_]?token|"
    r"token|authorization|bearer|private[-_]?key|cookie)$",
    re.IGNORECASE,
)
REQUEST_MAPPINGS = ("headers", "params", "data")


@dataclass
class ValidatedDefinition:
    connection_ids: list[str] = field(default_factory=list)
    requirement_ids: list[str] = field(default_factory=list)


class _Errors(dict):
    def add(self, path: str, message: str) -> None:
        self.setdefault(path, []).append(message)


def _as_uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        return None


def _scan_inline_credentials(config: Any, path: str, errors: _Errors) -> None:
    if isinstance(config, Mapping):
        for key, value in config.items():
            sub = f"{path}.{key}"
            if key in REQUEST_MAPPINGS and isinstance(value, Mapping):
                # Headers/params/data: the broader rule. One message per offending key (the narrower
                # config rule below would otherwise report `Authorization` a second time).
                for inner_key, inner_value in value.items():
                    if connection_types.is_sensitive_key(inner_key):
                        errors.add(
                            f"{sub}.{inner_key}",
                            f"'{inner_key}' carries credentials; store it in a Connection and reference it.",
                        )
                    else:
                        _scan_inline_credentials(inner_value, f"{sub}.{inner_key}", errors)
            elif SECRET_CONFIG_KEY.match(str(key)):
                errors.add(sub, f"'{key}' looks like a credential; store it in a Connection and reference it.")
            else:
                _scan_inline_credentials(value, sub, errors)
    elif isinstance(config, list):
        for index, item in enumerate(config):
            _scan_inline_credentials(item, f"{path}.{index}", errors)
    elif isinstance(config, str):
        # Values too (SPEC §12): `?api_key=...`, `user:pass@`, `Bearer ...`, `sk-...`, random-looking tokens.
        problem = credential_problem(config)
        if problem:
            errors.add(path, f"This value looks like a credential ({problem}); store it in a Connection and reference it.")


def _scan_secret_parameters(config: Mapping, path: str, errors: _Errors) -> None:
    """`{api_key}` in an http node's URL filled from `parameters` (node config or the inputs layer)."""
    layers = [(config, f"{path}.config")]
    if isinstance(config.get("inputs"), Mapping):
        layers.append((config["inputs"], f"{path}.config.inputs"))
    names: set[str] = set()
    for layer, _ in layers:
        if isinstance(layer.get("url"), str):
            names |= url_placeholders(layer["url"])
    for name in sorted(n for n in names if connection_types.is_sensitive_key(n)):
        for layer, where in layers:
            parameters = layer.get("parameters")
            sub = f"{where}.parameters.{name}"
            if isinstance(parameters, Mapping) and name in parameters and sub not in errors:
                errors.add(
                    sub,
                    f"'{name}' fills the URL placeholder {{{name}}} with a credential; store it in a Connection "
                    "and reference it.",
                )


def _check_graph(nodes: list[dict], errors: _Errors) -> None:
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
    # Kahn's algorithm: whatever is left over sits on a cycle.
    indegree = {n: len(deps) for n, deps in edges.items()}
    ready = [n for n, d in indegree.items() if d == 0]
    dependants: dict[str, list[str]] = {n: [] for n in edges}
    for n, deps in edges.items():
        for d in deps:
            dependants[d].append(n)
    seen = 0
    while ready:
        current = ready.pop()
        seen += 1
        for child in dependants[current]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if seen < len(edges):
        # Left over: the cycles and whatever depends on them. Peel off nodes nothing left depends on,
        # so the message names the cycle, not every node downstream of it.
        left = {n for n, d in indegree.items() if d > 0}
        while True:
            leaves = {n for n in left if not any(child in left for child in dependants[n])}
            if not leaves:
                break
            left -= leaves
        errors.add("nodes", f"depends_on forms a cycle through: {', '.join(sorted(left))}")


def validate_definition(*, definition: Any, project: Project, workflow) -> ValidatedDefinition:
    """Raise BadRequest (400, per-path details) or return the references the definition makes."""
    from apps.connections.models import Connection

    from .models import Requirement

    errors = _Errors()
    if not isinstance(definition, Mapping) or not isinstance(definition.get("nodes"), list):
        raise BadRequest("Invalid workflow definition.", details={"definition": ["must be an object with a 'nodes' list"]})
    unknown_top = sorted(set(definition) - {"nodes", "name", "description", "metadata"})
    for key in unknown_top:
        errors.add(f"definition.{key}", "unknown top-level field")
    nodes: list = definition["nodes"]
    if not nodes:
        errors.add("nodes", "a workflow needs at least an input and an output node")
    seen_ids: set[str] = set()
    counts = {"input": 0, "output": 0}
    connection_refs: list[tuple[int, str, str]] = []  # (index, node type, connection id)
    requirement_refs: list[tuple[int, str, str]] = []
    for index, node in enumerate(nodes):
        path = f"nodes.{index}"
        if not isinstance(node, Mapping):
            errors.add(path, "must be an object")
            continue
        node_id, node_type = node.get("id"), node.get("type")
        if not isinstance(node_id, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", node_id):
            errors.add(f"{path}.id", "must be a name of letters, digits, '_' or '-' (starting with a letter or '_')")
        elif node_id in seen_ids:
            errors.add(f"{path}.id", f"duplicate node id '{node_id}'")
        else:
            seen_ids.add(node_id)
        if node_type not in NODE_TYPES:
            errors.add(f"{path}.type", f"unknown node type '{node_type}'; known: {', '.join(NODE_TYPES)}")
            continue
        if node_type in counts:
            counts[node_type] += 1
        unknown = sorted(set(node) - {"id", "type", "depends_on", "connection", "config", "fields", "name"})
        for key in unknown:
            errors.add(f"{path}.{key}", "unknown node field")
        config = node.get("config", {})
        if not isinstance(config, Mapping):
            errors.add(f"{path}.config", "must be an object")
            config = {}
        _scan_inline_credentials(config, f"{path}.config", errors)
        if node_type == "http":
            _scan_secret_parameters(config, path, errors)
        _check_node_shape(node, node_type, config, path, errors)
        ref = node.get("connection")
        if ref is None:
            if node_type in CONNECTION_REQUIRED:
                errors.add(f"{path}.connection", f"a {node_type} node needs a connection")
            continue
        if node_type not in CONNECTION_ALLOWED:
            errors.add(f"{path}.connection", f"a {node_type} node takes no connection")
            continue
        if not isinstance(ref, Mapping) or len(ref) != 1 or not ({"id", "requirement"} & set(ref)):
            errors.add(f"{path}.connection", "must be {\"id\": <connection id>} or {\"requirement\": <requirement id>}")
            continue
        key = "id" if "id" in ref else "requirement"
        ref_id = _as_uuid(ref[key])
        if ref_id is None:
            errors.add(f"{path}.connection.{key}", "must be a UUID")
        elif key == "id":
            connection_refs.append((index, node_type, ref_id))
        else:
            requirement_refs.append((index, node_type, ref_id))
    for node_type, count in counts.items():
        if count != 1:
            errors.add("nodes", f"exactly one '{node_type}' node is required (found {count})")
    _check_graph([n for n in nodes if isinstance(n, Mapping)], errors)

    connections = {
        str(c.id): c
        for c in Connection.objects.filter(
            id__in={r[2] for r in connection_refs}, project=project, app__isnull=True
        ).only("id", "type")
    }
    for index, node_type, ref_id in connection_refs:
        connection = connections.get(ref_id)
        if connection is None:
            errors.add(f"nodes.{index}.connection.id", "no shared connection with this ID in the project")
        elif node_type not in connection_types.get_type(connection.type).node_types:
            errors.add(f"nodes.{index}.connection.id", f"a {connection.type} connection cannot serve a {node_type} node")
    requirements = {
        str(r.id): r for r in Requirement.objects.filter(id__in={r[2] for r in requirement_refs}, workflow=workflow)
    }
    for index, node_type, ref_id in requirement_refs:
        requirement = requirements.get(ref_id)
        if requirement is None:
            errors.add(f"nodes.{index}.connection.requirement", "no requirement with this ID on this workflow")
            continue
        ctype = requirement.connection_type
        if ctype not in connection_types.REGISTRY or node_type not in connection_types.REGISTRY[ctype].node_types:
            errors.add(
                f"nodes.{index}.connection.requirement", f"a {ctype} requirement cannot serve a {node_type} node"
            )
    if errors:
        raise BadRequest("Invalid workflow definition.", details=dict(errors))
    return ValidatedDefinition(
        connection_ids=list(dict.fromkeys(r[2] for r in connection_refs)),
        requirement_ids=list(dict.fromkeys(r[2] for r in requirement_refs)),
    )


def _check_node_shape(node: Mapping, node_type: str, config: Mapping, path: str, errors: _Errors) -> None:
    if node_type == "input":
        fields = node.get("fields", {})
        if not isinstance(fields, Mapping):
            errors.add(f"{path}.fields", "must be an object of {name: {type, required}}")
            return
        for name, spec in fields.items():
            if not isinstance(spec, Mapping) or spec.get("type", "string") not in FIELD_TYPES:
                errors.add(f"{path}.fields.{name}", f"type must be one of {', '.join(FIELD_TYPES)}")
    elif node_type == "output":
        fields = node.get("fields", {})
        if not isinstance(fields, Mapping) or not fields:
            errors.add(f"{path}.fields", "must map each output name to a template")
    elif node_type == "http":
        method = config.get("method")
        if method is not None and str(method).upper() not in connection_types.HTTP_METHODS:
            errors.add(f"{path}.config.method", f"must be one of {', '.join(connection_types.HTTP_METHODS)}")
        for key in REQUEST_MAPPINGS:
            if key in config and not isinstance(config[key], Mapping):
                errors.add(f"{path}.config.{key}", "must be an object")
    elif node_type == "template":
        if not isinstance(config.get("template"), (str, Mapping, list)):
            errors.add(f"{path}.config.template", "this field is required")
    elif node_type == "llm":
        for key in ("model", "prompt"):
            if not isinstance(config.get(key), str) or not config.get(key):
                errors.add(f"{path}.config.{key}", "this field is required")
    elif node_type == "sql":
        if not isinstance(config.get("query"), str) or not config.get("query").strip():
            errors.add(f"{path}.config.query", "this field is required")
