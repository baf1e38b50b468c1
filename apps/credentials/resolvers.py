"""The HTTP resolver: for workers that run apart from the web tier (no database credentials needed
beyond their own; secrets arrive only over the internal API, authenticated with the system token)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from apps.engine.netguard import StatelessClient
from apps.engine.types import Resolution, ResolvedConnection


class CredentialsApiError(RuntimeError):
    pass


def _connection(payload: dict[str, Any]) -> ResolvedConnection:
    return ResolvedConnection(
        connection_id=payload["connection_id"], type=payload["type"], config=payload["config"],
        owner=payload["owner"], user_id=payload.get("user_id"), requirement_id=payload.get("requirement_id"),
    )


class HttpResolver:
    def __init__(self, *, base_url: str, token: str, client: httpx.Client | None = None, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        # The internal API is ours: no SSRF guard (it normally lives on a private address by design).
        # trust_env=False: an HTTP(S)_PROXY from the environment must never see the system token or secrets.
        # Stateless: no cookie jar; the system token goes on each request, never on the client.
        self._client = client or StatelessClient(timeout=timeout, trust_env=False)

    def _post(self, path: str, body: dict) -> dict:
        response = self._client.post(f"{self.base_url}/internal/v1/credentials/{path}", json=body, headers=self._headers)
        if response.status_code != 200:
            # Never include the body: on success it holds secrets; on failure it is ours anyway.
            raise CredentialsApiError(f"credentials API answered {response.status_code}")
        return response.json()

    def resolve(self, *, connection_ids: Sequence[str], requirement_ids: Sequence[str], app_id, user_id, run_id) -> Resolution:
        data = self._post(
            "resolve",
            {"connection_ids": list(connection_ids), "requirement_ids": list(requirement_ids), "app_id": app_id,
             "user_id": user_id, "run_id": run_id},
        )
        return Resolution(
            connections={k: _connection(v) for k, v in data["connections"].items()},
            requirements={k: _connection(v) for k, v in data["requirements"].items()},
            unsatisfied=data["unsatisfied"],
        )

    def on_unauthorized(self, *, connection: ResolvedConnection, run_id) -> ResolvedConnection | None:
        data = self._post(
            "unauthorized",
            {"connection_id": connection.connection_id, "requirement_id": connection.requirement_id, "run_id": run_id},
        )
        return _connection(data["connection"]) if data.get("connection") else None
