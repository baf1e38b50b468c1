"""Reconnect in place (SPEC §13): new credentials for a link that already serves runs.

The connection keeps its ID (nodes, the link and the App's records keep pointing at it) and its current
credentials serve runs until the new ones are complete: a submitted secret (after the type's checks), or
the tokens of an OAuth2 grant whose callback succeeded, or, when the App verifies its users, the moment the
App confirms the flow. Then, in one transaction, the new config replaces the old one and `link.reconnected`
is sent. The replaced OAuth2 grant is revoked upstream after the commit (a provider call never runs inside
the transaction, and revoking before the swap would let runs in between fail with a revoked token); the
outcome lands in the connection's `status_reason` and the log.

An abandoned reconnect (consent declined, never finished, state expired, verification never confirmed)
never reached the swap, so it changed nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from apps.connections import oauth_flows
from apps.connections.models import Connection
from apps.connections.oauth_client import TOKEN_FIELDS
from apps.connections.services import connection_write_config
from apps.connections.signals import LINK_RECONNECTED, emit

logger = logging.getLogger(__name__)

RECONNECTED = "Reconnected with new credentials."
REVOKE_OUTCOME = {
    True: "Reconnected; the previous grant was revoked upstream.",
    False: "Reconnected; revoking the previous grant upstream failed (the provider refused or was unreachable).",
}


def is_announced(connection: Connection) -> bool:
    """Whether the connection's link is live for the App: anything but a first consent still in progress
    (`incomplete`) or a first link waiting for the App's confirmation (`pending_verification`). New
    credentials for an announced link are a reconnect; for the others they are still the first link."""
    return connection.status not in (Connection.Status.INCOMPLETE, Connection.Status.PENDING_VERIFICATION)


def _grant(config: dict[str, Any] | None) -> tuple[str, str]:
    config = config or {}
    return config.get("refresh_token") or "", config.get("access_token") or ""


def swap_in(*, connection: Connection, config: dict[str, Any], actor: str, also: dict[str, Any] | None = None) -> None:
    """Inside the caller's transaction, with `connection` locked: the new config replaces the current one
    (same ID), the connection turns active and healthy, `link.reconnected` is sent, and the replaced OAuth2
    grant is revoked upstream once the transaction commits.

    OAuth2: `config` is a token set (oauth_client.token_set); the stored provider, URL and scopes stay.
    `also`: non-secret columns written with it (the new credentials' `account`, `last_verified_at`).
    """
    previous = dict(connection.config or {})
    if connection.type == "oauth2":
        oauth_flows.tokens_store(connection=connection, tokens={k: v for k, v in config.items() if k in TOKEN_FIELDS},
                                 actor=actor, also=also)
    else:
        connection_write_config(connection=connection, config=config, actor=actor, status=Connection.Status.ACTIVE,
                                changes=also)
    connection.health = Connection.Health.OK
    connection.refresh_failures = 0
    connection.status_reason = RECONNECTED
    connection.save(update_fields=["health", "refresh_failures", "status_reason", "updated_at"])
    emit(LINK_RECONNECTED, connection_id=connection.pk)
    revoke_after_commit(connection=connection, config=previous, record_outcome=True)


def revoke_after_commit(*, connection: Connection, config: dict[str, Any], record_outcome: bool = False,
                        on_result=None) -> None:
    """Once the caller's transaction commits, revoke the OAuth2 grant held in `config` (a config this
    connection no longer uses: a replaced one, or a pending one being thrown away). Nothing to do for other
    types, for a config without tokens, or when the connection still holds the same grant.

    `record_outcome`: write the outcome into the connection's `status_reason` (a reconnect). `on_result`:
    called with the outcome (True, False, or None when the provider has no revocation URL).
    """
    if connection.type != "oauth2" or not any(_grant(config)):
        return
    holder = Connection(pk=connection.pk, project_id=connection.project_id, type="oauth2",
                        provider_id=connection.provider_id, config=dict(config))

    def revoke() -> None:
        current = Connection.objects.filter(pk=connection.pk).only("config").first()
        if current is not None and _grant(current.config) == _grant(config):
            return  # the provider handed the same grant back: revoking it would cut the connection off
        revoked = oauth_flows.revoke_upstream(connection=holder)
        logger.info("oauth2 grant replaced or discarded on connection %s: revoked upstream: %s", connection.pk,
                    {True: "yes", False: "failed", None: "not supported"}[revoked])
        if record_outcome and revoked is not None:
            Connection.objects.filter(pk=connection.pk, status_reason=RECONNECTED).update(
                status_reason=REVOKE_OUTCOME[revoked]
            )
        if on_result is not None:
            on_result(revoked)

    transaction.on_commit(revoke, robust=True)  # robust: a failure is logged, the committed change stands
