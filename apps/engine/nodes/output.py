"""The `output` node: renders each of its `fields` (name -> template); that mapping is the run's output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import NodeError, PathErrors
from ..state import NodeEnv
from ..templating import render
from .base import NodeType


def check_fields(node: Mapping[str, Any], config: Mapping[str, Any], path: str, errors: PathErrors) -> None:
    fields = node.get("fields", {})
    if not isinstance(fields, Mapping) or not fields:
        errors.add(f"{path}.fields", "must map each output name to a template")


def run(env: NodeEnv) -> Any:
    fields = env.node.get("fields") or {}
    if not isinstance(fields, Mapping):
        raise NodeError("invalid_config", "fields must be an object")
    return {name: render(template, env.context) for name, template in fields.items()}


NODE = NodeType(name="output", run=run, extra_check=check_fields)
