"""User verification (SPEC §13, anti-phishing): the App owner's backend confirms who completed a connection.

Why: a connect link minted for user A can be forwarded to (or phished onto) user B, whose account would then
serve A's runs. With `App.connect_verifier_url` set, a connection completed on the hosted page or through
OAuth2 does not count yet: a first link stays `pending_verification` (runs and the status endpoint treat it
as unlinked); a reconnect keeps the new config aside in the ConnectFlow, while the current one keeps serving.
The browser goes to `{connect_verifier_url}?flow_id=...`, where the App knows who is signed in, and the App's
backend calls `POST /v1/connect/flows/{flow_id}/confirm {"user_id"}` (access key, App host):
- the flow's user_id → the link goes live (`link.created`) or the reconnect is swapped in (`link.reconnected`);
- another user_id → the flow is discarded: a first link's connection is deleted, any grant it carried is
  revoked upstream, and the answer is 422 `user_mismatch`;
- no confirmation within CONNECT_VERIFY_TTL_SECONDS → the scheduler's sweep discards it the same way (a
  late confirm finds it expired and discards it at once).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.connections.models import Connection
from apps.connections.signals import LINK_CREATED, emit
from apps.core.errors import ApplicationError, Conflict, NotFound
from apps.deployments.models import App
from apps.workflows.models import Requirement

from . import reconnect
from .models import ConnectFlow, EndUserLink
from .tokens import validate_user_id

logger = logging.getLogger(__name__)

# Finished flows are kept this long (a retried confirm still gets its answer), then purged by the sweep.
FINISHED_FLOW_KEEP = timedelta(days=1)


class UserMismatch(ApplicationError):
    """The App confirmed a flow for another user than the one it was started for: discarded."""

    code, status = "user_mismatch", 422


def required(app: App) -> bool:
    """Whether connections completed for this App wait for the App's confirmation."""
    return bool(app.connect_verifier_url)


def verifier_redirect_url(*, app: App, flow: ConnectFlow) -> str:
    """`{connect_verifier_url}?flow_id=...`, keeping any query the App's URL already has."""
    parts = urlsplit(app.connect_verifier_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "flow_id"]
    query.append(("flow_id", str(flow.pk)))
    return urlunsplit(parts._replace(query=urlencode(query)))


# Inside a reconnect's pending_config: the non-secret columns the new credentials bring (their `account`, when
# they were verified), written with them at the swap. Not a field name of any connection type.
PENDING_ALSO_KEY = "__also__"


def flow_start(*, app: App, user_id: str, requirement: Requirement, connection: Connection, kind: str,
               pending_config: dict | None = None, pending_also: dict | None = None) -> ConnectFlow:
    """Inside the caller's transaction (the connection locked): open a flow waiting for the App's confirmation.

    An earlier pending flow of the same connection is superseded (the user started again): discarded, and a
    pending reconnect grant it held is revoked upstream after the commit. `pending_also` (reconnect): the
    account and verification time of the new credentials, swapped in with them.
    """
    if kind == ConnectFlow.Kind.RECONNECT and pending_config is not None and pending_also:
        also = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in pending_also.items()}
        pending_config = {**pending_config, PENDING_ALSO_KEY: also}
    for earlier in ConnectFlow.objects.select_for_update().filter(connection=connection, status=ConnectFlow.Status.PENDING):
        _finish(earlier, status=ConnectFlow.Status.DISCARDED, outcome="superseded")
        if earlier.kind == ConnectFlow.Kind.RECONNECT:
            _revoke_pending(earlier, connection=connection)
        earlier.pending_config = None
        earlier.save(update_fields=["status", "outcome", "finished_at", "pending_config", "updated_at"])
    return ConnectFlow.objects.create(
        app=app, user_id=user_id, requirement=requirement, connection=connection, kind=kind,
        pending_config=pending_config if kind == ConnectFlow.Kind.RECONNECT else None,
        expires_at=timezone.now() + timedelta(seconds=float(settings.CONNECT_VERIFY_TTL_SECONDS)),
    )


def _finish(flow: ConnectFlow, *, status: str, outcome: str) -> None:
    flow.status, flow.outcome, flow.finished_at = status, outcome, timezone.now()


def _record_revocation(flow_id):
    def record(revoked: bool | None) -> None:
        ConnectFlow.objects.filter(pk=flow_id).update(revoked_upstream=revoked)

    return record


def _revoke_pending(flow: ConnectFlow, *, connection: Connection) -> None:
    """After the commit, revoke the grant a pending reconnect flow held (never the connection's own)."""
    reconnect.revoke_after_commit(connection=connection, config=flow.pending_config or {},
                                  on_result=_record_revocation(flow.pk))


def _discard_locked(flow: ConnectFlow, *, outcome: str) -> None:
    """Inside a transaction, `flow` locked and pending: throw away what it would have made live."""
    connection = (
        Connection.objects.select_for_update().filter(pk=flow.connection_id).first() if flow.connection_id else None
    )
    if connection is not None:
        if flow.kind == ConnectFlow.Kind.RECONNECT:
            _revoke_pending(flow, connection=connection)  # the connection keeps its current credentials
        elif connection.status == Connection.Status.PENDING_VERIFICATION:
            reconnect.revoke_after_commit(connection=connection, config=dict(connection.config or {}),
                                          on_result=_record_revocation(flow.pk))
            # The link goes with its connection (cascade). It was never announced, so no link.deleted either.
            Connection.objects.filter(pk=connection.pk).delete()
    _finish(flow, status=ConnectFlow.Status.DISCARDED, outcome=outcome)
    flow.pending_config = None
    flow.save(update_fields=["status", "outcome", "finished_at", "pending_config", "updated_at"])
    logger.info("connect flow %s discarded (%s)", flow.pk, outcome)


def _confirm_locked(flow: ConnectFlow) -> None:
    connection = Connection.objects.select_for_update().filter(pk=flow.connection_id).first() if flow.connection_id else None
    if connection is None or not EndUserLink.objects.filter(connection=connection).exists():
        raise Conflict("The connection of this flow was removed; the user must connect again.")
    actor = f"end_user:{flow.user_id}"[:200]
    if flow.kind == ConnectFlow.Kind.RECONNECT:
        config = dict(flow.pending_config or {})
        also = config.pop(PENDING_ALSO_KEY, None) or {}
        if isinstance(also.get("last_verified_at"), str):
            also["last_verified_at"] = datetime.fromisoformat(also["last_verified_at"])
        reconnect.swap_in(connection=connection, config=config, actor=actor, also=also)
    else:
        if connection.status != Connection.Status.PENDING_VERIFICATION:
            raise Conflict("The connection of this flow is no longer waiting for verification.")
        connection.status = Connection.Status.ACTIVE
        connection.status_reason = "Confirmed by the App."
        connection.save(update_fields=["status", "status_reason", "updated_at"])
        emit(LINK_CREATED, connection_id=connection.pk)
    _finish(flow, status=ConnectFlow.Status.CONFIRMED, outcome="confirmed")
    flow.pending_config = None
    flow.save(update_fields=["status", "outcome", "finished_at", "pending_config", "updated_at"])
    logger.info("connect flow %s confirmed (%s)", flow.pk, flow.kind)


def flow_confirm(*, app: App, flow_id, user_id: str) -> ConnectFlow:
    """The App's backend confirms that `user_id` completed the flow. NotFound for another App's flow or an
    unknown ID; Conflict when it is no longer pending (discarded or expired); UserMismatch (after discarding
    it) for another user. Confirming a confirmed flow again with the same user_id answers as the first time.
    """
    validate_user_id(user_id)
    try:
        flow_uuid = uuid.UUID(str(flow_id))
    except ValueError:
        raise NotFound("No such connect flow for this App.") from None
    refusal: ApplicationError | None = None
    with transaction.atomic():
        flow = ConnectFlow.objects.select_for_update().filter(pk=flow_uuid, app=app).first()
        if flow is None:
            raise NotFound("No such connect flow for this App.")
        if flow.status == ConnectFlow.Status.CONFIRMED:
            if flow.user_id != user_id:
                raise Conflict("This flow was already confirmed for another user.")
            return flow
        if flow.status != ConnectFlow.Status.PENDING:
            raise Conflict("This flow is no longer pending; the user must connect again.",
                           details={"outcome": flow.outcome})
        if flow.expires_at <= timezone.now():
            _discard_locked(flow, outcome="expired")
            refusal = Conflict("This flow expired before it was confirmed; the user must connect again.",
                               details={"outcome": "expired"})
        elif flow.user_id != user_id:
            _discard_locked(flow, outcome="user_mismatch")
            refusal = UserMismatch(
                "This connection was completed for another user: it was discarded and revoked.",
                details={"user_id": ["does not match the user the connect flow was started for"]},
            )
        else:
            _confirm_locked(flow)
    if refusal is not None:  # raised after the commit: the discard stands
        raise refusal
    return flow


def flows_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """The periodic job: discard pending flows past their deadline (revoking what they carried), and purge
    flows finished more than a day ago. Returns {"discarded", "purged"}."""
    now = now or timezone.now()
    discarded = 0
    due = list(ConnectFlow.objects.filter(status=ConnectFlow.Status.PENDING, expires_at__lte=now)
               .order_by("expires_at").values_list("pk", flat=True)[:1000])
    for pk in due:
        with transaction.atomic():
            flow = ConnectFlow.objects.select_for_update().filter(pk=pk, status=ConnectFlow.Status.PENDING).first()
            if flow is None or flow.expires_at > now:
                continue  # confirmed or discarded meanwhile
            _discard_locked(flow, outcome="expired")
            discarded += 1
    purged, _ = ConnectFlow.objects.filter(
        status__in=[ConnectFlow.Status.CONFIRMED, ConnectFlow.Status.DISCARDED], finished_at__lte=now - FINISHED_FLOW_KEEP,
    ).delete()
    return {"discarded": discarded, "purged": purged}
