"""The node-type registry: every node type the engine knows, in the order error messages list them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..state import NodeEnv
from . import http, llm, output, sql, template
from . import input as input_node
from .base import Connection, NodeType

REGISTRY: dict[str, NodeType] = {
    node_type.name: node_type for node_type in (input_node.NODE, output.NODE, http.NODE, template.NODE, llm.NODE, sql.NODE)
}
NODE_TYPES: tuple[str, ...] = tuple(REGISTRY)
# What the executor calls, by type. A plain dict (tests swap a runner in with monkeypatch.setitem).
RUNNERS: dict[str, Callable[[NodeEnv], Any]] = {name: node_type.run for name, node_type in REGISTRY.items()}
# Node types that need a connection, and which may have one.
CONNECTION_REQUIRED: tuple[str, ...] = tuple(n for n, t in REGISTRY.items() if t.connection is Connection.REQUIRED)
CONNECTION_ALLOWED: tuple[str, ...] = tuple(n for n, t in REGISTRY.items() if t.connection is not Connection.NONE)


def get(name: Any) -> NodeType | None:
    return REGISTRY.get(name) if isinstance(name, str) else None
