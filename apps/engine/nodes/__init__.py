"""Node types: one module per type (input, output, template, http, llm, sql), each declaring a `NodeType`
(config shape, connections it takes, shape check, runner); `registry` lists them.

Runners receive already-masked outputs of upstream nodes through the template context, so a secret that
an upstream echoed can never be forwarded by a template to another server.
"""

from ..state import NodeEnv
from .base import ConfigKey, Connection, Kind, NodeType
from .http import send_prepared
from .input import INPUT_TYPES, validate_input
from .registry import CONNECTION_ALLOWED, CONNECTION_REQUIRED, NODE_TYPES, REGISTRY, RUNNERS, get

__all__ = [
    "CONNECTION_ALLOWED",
    "CONNECTION_REQUIRED",
    "INPUT_TYPES",
    "NODE_TYPES",
    "REGISTRY",
    "RUNNERS",
    "ConfigKey",
    "Connection",
    "Kind",
    "NodeEnv",
    "NodeType",
    "get",
    "send_prepared",
    "validate_input",
]
