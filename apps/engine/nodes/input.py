"""The `input` node: declares the run input's fields; its output is the checked (masked) run input."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import PathErrors
from ..state import NodeEnv
from .base import NodeType

INPUT_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def validate_input(fields: Any, run_input: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Check run input against the input node's `fields`. Returns (value, errors by field).

    Undeclared fields are refused when the node declares fields (a typo should not pass silently); optional
    fields that are absent are present as their `default` or None, so templates can test them.
    """
    if not isinstance(run_input, Mapping):
        return {}, {"input": ["must be an object"]}
    if not isinstance(fields, Mapping) or not fields:
        return dict(run_input), {}
    errors: dict[str, list[str]] = {}
    value: dict[str, Any] = {}
    for name, spec in fields.items():
        spec = spec if isinstance(spec, Mapping) else {}
        if name not in run_input or run_input[name] is None:
            if spec.get("required"):
                errors.setdefault(name, []).append("this field is required")
            value[name] = spec.get("default")
            continue
        item = run_input[name]
        kind = spec.get("type")
        check = INPUT_TYPES.get(kind) if kind else None
        if check is not None and not check(item):
            errors.setdefault(name, []).append(f"must be of type {kind}")
        value[name] = item
    for name in run_input:
        if name not in fields:
            errors.setdefault(name, []).append("unknown field")
    return value, errors


def check_fields(node: Mapping[str, Any], config: Mapping[str, Any], path: str, errors: PathErrors) -> None:
    fields = node.get("fields", {})
    if not isinstance(fields, Mapping):
        errors.add(f"{path}.fields", "must be an object of {name: {type, required}}")
        return
    for name, spec in fields.items():
        if not isinstance(spec, Mapping) or spec.get("type", "string") not in INPUT_TYPES:
            errors.add(f"{path}.fields.{name}", f"type must be one of {', '.join(INPUT_TYPES)}")


def run(env: NodeEnv) -> Any:
    return env.run.input_value


NODE = NodeType(name="input", run=run, extra_check=check_fields)
