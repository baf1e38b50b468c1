"""The App as one MCP tool (SPEC §14): its name, description and the JSON Schemas of its input and output,
read from the deployed version's input and output nodes.

The input schema says exactly what the engine's input check accepts (apps.engine.nodes.input.validate_input):
declared fields with their type, `required` ones listed, undeclared fields refused when any field is declared,
anything when none is. The output node maps names to templates whose values have no declared type, so the
output schema names the fields (all present in a completed run's output) without typing them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from apps.deployments.models import App
from apps.engine.nodes.input import INPUT_TYPES

_NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_NAME_LENGTH = 128  # SEP-986: 1-128 of [A-Za-z0-9_.-]


def tool_name(app: App) -> str:
    """The App's slug as an MCP tool name: its name in ASCII, other characters folded to `-`
    ("Invoice bot" → "invoice-bot"); `app-<id prefix>` when nothing of the name is left."""
    ascii_name = unicodedata.normalize("NFKD", app.name).encode("ascii", "ignore").decode()
    slug = _NOT_NAME.sub("-", ascii_name.lower()).strip("-.")[:MAX_NAME_LENGTH].rstrip("-.")
    return slug or f"app-{str(app.id)[:8]}"


def _node(definition: Any, node_type: str) -> Mapping[str, Any]:
    nodes = (definition or {}).get("nodes") or []
    return next((n for n in nodes if isinstance(n, Mapping) and n.get("type") == node_type), {})


def input_schema(definition: Any) -> dict[str, Any]:
    fields = _node(definition, "input").get("fields")
    if not isinstance(fields, Mapping) or not fields:
        return {"type": "object"}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in fields.items():
        spec = spec if isinstance(spec, Mapping) else {}
        prop: dict[str, Any] = {}
        if spec.get("type") in INPUT_TYPES:
            prop["type"] = spec["type"]
        for key in ("description", "title"):
            if isinstance(spec.get(key), str):
                prop[key] = spec[key]
        if "default" in spec:
            prop["default"] = spec["default"]
        properties[name] = prop
        if spec.get("required"):
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def output_schema(definition: Any) -> dict[str, Any] | None:
    fields = _node(definition, "output").get("fields")
    if not isinstance(fields, Mapping) or not fields:
        return None
    return {"type": "object", "properties": {name: {} for name in fields}, "required": list(fields)}


def tool_for(app: App) -> dict[str, Any] | None:
    """The tool of the App's deployed version (None when nothing is deployed). Reads the workflow's
    description: one query (a workflow's description may change, so it is not cached with the version)."""
    deployment = app.current_deployment
    if deployment is None:
        return None
    version = deployment.workflow_version
    description = (version.workflow.description or version.description or app.display_name or app.name).strip()
    tool: dict[str, Any] = {
        "name": tool_name(app),
        "title": app.display_name or app.name,
        "description": description,
        "inputSchema": input_schema(version.definition),
    }
    schema = output_schema(version.definition)
    if schema is not None:
        tool["outputSchema"] = schema
    return tool
