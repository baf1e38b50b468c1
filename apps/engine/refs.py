"""Which credentials a definition needs: what the resolver is asked for, in one batch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def collect_references(definition: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Return (connection_ids, requirement_ids) in node order, each without duplicates."""
    connection_ids: dict[str, None] = {}
    requirement_ids: dict[str, None] = {}
    nodes = definition.get("nodes") if isinstance(definition, Mapping) else None
    for node in nodes or ():
        ref = node.get("connection") if isinstance(node, Mapping) else None
        if not isinstance(ref, Mapping):
            continue
        if ref.get("id"):
            connection_ids[str(ref["id"])] = None
        elif ref.get("requirement"):
            requirement_ids[str(ref["requirement"])] = None
    return list(connection_ids), list(requirement_ids)
