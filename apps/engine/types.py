"""The engine's vocabulary: what it receives (resolved credentials, options) and what it returns.

Pure data, no behaviour beyond small serialisation helpers, so the web tier, the workers and the tests
all speak the same shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Owner = Literal["project", "end_user"]
NodeStatus = Literal["success", "failure", "skipped"]
RunStatus = Literal["completed", "failed", "canceled"]


@dataclass(frozen=True)
class ResolvedConnection:
    """One decrypted connection, as handed to the engine for a single run.

    `type` is canonical (`http`, `http_api_key`, `openai`, `oauth2`, `postgresql`). `config` holds the
    secrets: it never leaves the engine; only `provenance()` does.
    """

    connection_id: str
    type: str
    config: Mapping[str, Any]
    owner: Owner
    user_id: str | None = None
    requirement_id: str | None = None

    def provenance(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "owner": self.owner,
            "user_id": self.user_id,
            "requirement_id": self.requirement_id,
        }

    def __repr__(self) -> str:  # never print the config: it holds secrets
        return (
            f"ResolvedConnection(connection_id={self.connection_id!r}, type={self.type!r}, owner={self.owner!r}, "
            f"user_id={self.user_id!r}, requirement_id={self.requirement_id!r})"
        )


@dataclass
class Resolution:
    connections: dict[str, ResolvedConnection] = field(default_factory=dict)  # by connection id
    requirements: dict[str, ResolvedConnection] = field(default_factory=dict)  # by requirement id
    unsatisfied: list[dict[str, Any]] = field(default_factory=list)  # [{"id", "name", "title"}]

    def all_connections(self) -> list[ResolvedConnection]:
        return [*self.connections.values(), *self.requirements.values()]


@runtime_checkable
class CredentialResolver(Protocol):
    def resolve(
        self,
        *,
        connection_ids: Sequence[str],
        requirement_ids: Sequence[str],
        app_id: str | None,
        user_id: str | None,
        run_id: str | None,
    ) -> Resolution:
        """Resolve every reference of a run in one batched call (before any node runs)."""
        ...

    def on_unauthorized(self, *, connection: ResolvedConnection, run_id: str | None) -> ResolvedConnection | None:
        """The provider answered 401 with `connection`.

        For OAuth2 the resolver may refresh and return a new connection: the engine retries once with it.
        Otherwise it marks an end-user connection `unauthorized` and returns None.
        """
        ...


@dataclass
class RunContext:
    app_id: str | None = None
    user_id: str | None = None
    run_id: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TemplateLimits:
    """Budget of one template render (SPEC section 12; enforced in templating.py).

    Defaults suit prompts and JSON bodies (a 1M-character prompt is far past any model's context); the runs
    layer builds these from settings (TEMPLATE_MAX_*). Over any of them the node fails with `template_limit`.
    """

    max_output_chars: int = 1_000_000  # the output, and any one string the template builds
    max_width: int = 100_000  # widths, paddings, precisions, repeat counts, items of a built sequence
    max_loop_steps: int = 100_000  # iterations of all `for` loops plus macro calls, nested included
    max_render_seconds: float = 2.0  # wall clock, checked at each step, built string and output chunk
    max_built_chars: int = 16_000_000  # all strings built in one render (what loops could keep alive)


@dataclass(frozen=True)
class RunOptions:
    error_on_node_failure: bool = False
    last_node_output: bool = False
    stream: bool = False
    template_limits: TemplateLimits = TemplateLimits()


@dataclass
class NodeResult:
    status: NodeStatus
    output: Any = None
    error: dict[str, Any] | None = None
    # Provenance only ({connection_id, owner, user_id, requirement_id}), never a credential value.
    connection: dict[str, Any] | None = None
    started: float | None = None  # time.monotonic() in milliseconds
    ended: float | None = None

    @property
    def duration_ms(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "output": self.output,
            "error": self.error,
            "connection": self.connection,
            "duration_ms": self.duration_ms,
        }


@dataclass
class RunResult:
    status: RunStatus
    output: Any = None
    error: dict[str, Any] | None = None  # {"code", "message", "details"}
    nodes: dict[str, NodeResult] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "output": self.output,
            "error": self.error,
            "nodes": {node_id: result.to_dict() for node_id, result in self.nodes.items()},
        }
