"""What a node type declares: its name, config shape, the connections it takes, its shape check, its runner.

`check_definition` (engine/definition.py) validates a saved definition from these declarations, the
executor runs nodes through `run`, and workflows/validation.py checks a referenced connection's type
against `connection_types`. Unknown config keys stay allowed: a declaration lists the keys a type reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..errors import PathErrors
from ..state import NodeEnv


class Kind(Enum):
    """What a config key must hold when validated on save."""

    ANY = "any"  # read at run time only (rendered, then checked by the runner)
    TEXT = "text"  # a non-empty string
    NONBLANK_TEXT = "nonblank_text"  # a string with something besides whitespace
    TEMPLATE = "template"  # a string, or a JSON object/array of templates
    MAPPING = "mapping"  # an object when present


_KIND_OK: dict[Kind, Callable[[Any], bool]] = {
    Kind.ANY: lambda v: True,
    Kind.TEXT: lambda v: isinstance(v, str) and bool(v),
    Kind.NONBLANK_TEXT: lambda v: isinstance(v, str) and bool(v.strip()),
    Kind.TEMPLATE: lambda v: isinstance(v, (str, Mapping, list)),
    Kind.MAPPING: lambda v: isinstance(v, Mapping),
}

# The message for an optional key of the wrong kind (ANY is always right).
_WRONG_KIND: dict[Kind, str] = {
    Kind.TEXT: "must be a non-empty string",
    Kind.NONBLANK_TEXT: "must be a non-empty string",
    Kind.TEMPLATE: "must be a template (a string, object or array)",
    Kind.MAPPING: "must be an object",
}


@dataclass(frozen=True)
class ConfigKey:
    name: str
    kind: Kind = Kind.ANY
    required: bool = False


class Connection(Enum):
    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


ShapeCheck = Callable[[Mapping[str, Any], Mapping[str, Any], str, PathErrors], None]


def _no_extra_check(node: Mapping[str, Any], config: Mapping[str, Any], path: str, errors: PathErrors) -> None:
    return None


@dataclass(frozen=True)
class NodeType:
    name: str
    run: Callable[[NodeEnv], Any]
    config: tuple[ConfigKey, ...] = ()
    connection: Connection = Connection.NONE
    # Connection types (engine/connection_types.py names) a node of this type can use.
    connection_types: tuple[str, ...] = ()
    # Checks beyond the config keys (node `fields`, allowed values), run before the key checks.
    extra_check: ShapeCheck = _no_extra_check

    def check_shape(self, node: Mapping[str, Any], config: Mapping[str, Any], path: str, errors: PathErrors) -> None:
        """Add this node's shape errors (`path` is `nodes.<index>`; `config` is already known to be a mapping)."""
        self.extra_check(node, config, path, errors)
        for key in self.config:
            if key.required and not _KIND_OK[key.kind](config.get(key.name)):
                errors.add(f"{path}.config.{key.name}", "this field is required")
            elif not key.required and key.name in config and not _KIND_OK[key.kind](config[key.name]):
                errors.add(f"{path}.config.{key.name}", _WRONG_KIND[key.kind])

    def accepts(self, connection_type: str) -> bool:
        return connection_type in self.connection_types
