"""The `template` node: renders `config.template` into `{"text": ...}`."""

from __future__ import annotations

from typing import Any

from ..errors import NodeError
from ..state import NodeEnv
from ..templating import render
from .base import ConfigKey, Kind, NodeType


def run(env: NodeEnv) -> Any:
    if "template" not in env.config:
        raise NodeError("invalid_config", "config.template is required")
    # A single `{{ expression }}` (or a JSON structure of templates) keeps its native value under "text".
    return {"text": render(env.config["template"], env.context)}


NODE = NodeType(name="template", run=run, config=(ConfigKey("template", Kind.TEMPLATE, required=True),))
