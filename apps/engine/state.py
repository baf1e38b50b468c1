"""What a node runner gets: `NodeEnv` (its node, template context, connection) and the run-wide `RunState`.

Its own module so the node types (`nodes/`) and the scheduler (`executor.py`) both depend on it and not on
each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import NodeError
from .masking import Masker, connection_secrets
from .types import CredentialResolver, ResolvedConnection, RunContext, RunOptions

EventCallback = Callable[[str, dict], None]


class RunState:
    """What node runners may use for one run. Thread-safe where branches run concurrently."""

    def __init__(
        self,
        *,
        resolver: CredentialResolver,
        context: RunContext,
        options: RunOptions,
        http_client: httpx.Client,
        masker: Masker,
        on_event: EventCallback | None,
        is_canceled: Callable[[], bool] | None,
        db_connect: Callable | None,
        allow_private_network: bool,
    ) -> None:
        self.resolver = resolver
        self.context = context
        self.options = options
        self.http_client = http_client
        self.masker = masker
        self.on_event = on_event
        self.is_canceled = is_canceled
        self.db_connect = db_connect
        self.allow_private_network = allow_private_network
        self.input_value: dict[str, Any] = {}
        self._event_lock = threading.Lock()
        self._masker_lock = threading.Lock()

    def emit(self, type: str, data: dict, *, masked: bool = False) -> None:
        if self.on_event is None:
            return
        payload = data if masked else self.masker.mask(data)
        with self._event_lock:  # never two callbacks at once, even from concurrent branches
            self.on_event(type, payload)

    def canceled(self) -> bool:
        return bool(self.is_canceled and self.is_canceled())

    def unauthorized(self, connection: ResolvedConnection) -> ResolvedConnection | None:
        replacement = self.resolver.on_unauthorized(connection=connection, run_id=self.context.run_id)
        if replacement is not None:
            with self._masker_lock:  # a refreshed token is a new secret to mask
                self.masker = self.masker.extended(connection_secrets(replacement))
        return replacement


@dataclass
class NodeEnv:
    node: Mapping[str, Any]
    context: dict[str, Any]  # {"input": ..., "nodes": {id: {"output", "status", "error"}}}
    connection: ResolvedConnection | None
    run: RunState

    @property
    def id(self) -> str:
        return self.node["id"]

    @property
    def config(self) -> Mapping[str, Any]:
        config = self.node.get("config")
        if config is None:
            return {}
        if not isinstance(config, Mapping):
            raise NodeError("invalid_config", "config must be an object")
        return config

    def require_connection(self, *types: str) -> ResolvedConnection:
        if self.connection is None:
            raise NodeError("invalid_connection", f"A {self.node.get('type')} node needs a connection")
        if self.connection.type not in types:
            raise NodeError(
                "invalid_connection",
                f"A {self.node.get('type')} node cannot use a {self.connection.type} connection",
            )
        return self.connection
