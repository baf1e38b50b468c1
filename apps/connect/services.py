from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.connections import oauth_flows, oauth_state
from apps.connections.credential_checks import (
    AccountMismatch,
    VerificationFailed,
    account_matches,
    fetch_userinfo,
    verify_credentials,
)
from apps.connections.models import Connection, OAuthProvider, OAuthState
from apps.connections.oauth_client import OAuthFlowError, token_set
from apps.connections.services import connection_write_config
from apps.connections.signals import LINK_CREATED, LINK_DELETED, emit
from apps.core.errors import BadRequest, Conflict, NotFound
from apps.deployments.models import App
from apps.engine import connection_types, origins
from apps.engine.connection_types import ConfigError
from apps.workflows.models import Requirement

from . import reconnect, tokens, verification
from .models import ConnectFlow, EndUserLink, UsedConnectToken
from .selectors import end_user_link

logger = logging.getLogger(__name__)


def redirect_url_allowed(*, app: App, redirect_url: str) -> bool:
    """Origin comparison (scheme, host, port; default ports normalized) against the App's allowed origins."""
    origin = origins.browser_origin(redirect_url)
    if origin is None:
        return False
    return any(origins.browser_origin(allowed) == origin for allowed in app.allowed_redirect_origins or [])


def connect_token_create(
    *, app: App, user_id: str, redirect_url: str | None = None, reconnect: bool = False, expected_account: str = ""
) -> tuple[str, str, datetime]:
    """Mint a connect token for one end user of `app`. Returns (token, hosted page URL, expires_at).

    `reconnect`: the hosted page opens with new-credential forms for the requirements already linked.
    `expected_account`: the upstream account id the user must link (SPEC §13); another account is refused.
    """
    tokens.validate_user_id(user_id)
    if not isinstance(expected_account, str) or len(expected_account) > tokens.MAX_EXPECTED_ACCOUNT_LENGTH:
        raise BadRequest("Invalid request.", details={"expected_account": ["must be an account id of at most 255 characters"]})
    if redirect_url is not None and redirect_url != "":
        if not isinstance(redirect_url, str) or len(redirect_url) > 2000 or not redirect_url_allowed(
            app=app, redirect_url=redirect_url
        ):
            raise BadRequest(
                "Invalid request.",
                details={"redirect_url": ["must be an http(s) URL on one of the App's allowed redirect origins"]},
            )
    token, claims = tokens.mint(app_id=str(app.id), user_id=user_id, redirect_url=redirect_url or "", reconnect=reconnect,
                                expected_account=expected_account.strip())
    logger.info("connect token minted, valid until %s", claims.expires_at.isoformat())
    return token, tokens.hosted_page_url(token), claims.expires_at


def connect_token_claim_for_page(*, claims: tokens.ConnectClaims) -> bool:
    """Record that a browser exchanged this token on the hosted page (SPEC §12: the exchange is single-use).

    True for the first exchange, False when the token was exchanged before. One INSERT on the unique
    `jti` decides it, so two browsers racing in two processes cannot both win (SQLite and PostgreSQL
    alike). Rows of expired tokens are purged on the way: a used token that expired is refused by its
    `exp` anyway, so the table only ever holds tokens still within their lifetime.
    """
    UsedConnectToken.objects.filter(expires_at__lte=timezone.now()).delete()
    try:
        with transaction.atomic():  # a savepoint: a lost race must not break the caller's transaction
            UsedConnectToken.objects.create(jti=claims.jti, expires_at=claims.expires_at)
    except IntegrityError:
        return False
    return True


def _end_user_actor(user_id: str) -> str:
    return f"end_user:{user_id}"[:200]


def end_user_connection_save(
    *, app: App, user_id: str, requirement: Requirement, config: Any, type: str | None = None,
    expected_account: str = "",
) -> EndUserLink:
    """Store the end user's credentials for `requirement` as an **active** connection and link it.

    A user who already linked one keeps its connection ID; only the config is replaced (and recorded
    in the config history as who/when/which fields, never a value): a reconnect (`link.reconnected`).
    OAuth2 requirements are refused: their tokens come from the authorization flow.

    When the App verifies its users (`connect_verifier_url`), a first link is stored `pending_verification`
    and new credentials for a live link wait aside; `link.verification_flow` is then the ConnectFlow the
    App must confirm (None otherwise).


    SPEC §13: the requirement's builder-fixed fields (`spec.config`) are merged in and may not be submitted
    (400); the credentials are verified first (the requirement's `spec.verify` or the type's default probe:
    422 `credentials_invalid` / `verification_failed`), and with `expected_account` the probe's account must be
    that one (422 `account_mismatch`). Nothing is stored unless all of that passed: the probe runs before the
    transaction, so no connection, link or history row is written for refused credentials.
    """
    ctype = connection_types.canonical_type(requirement.connection_type)
    if type is not None:
        try:
            given = connection_types.canonical_type(type) if isinstance(type, str) else None
        except ConfigError:
            given = None
        if given != ctype:
            raise BadRequest("Invalid request.", details={"type": [f"must be '{ctype}', the requirement's connection type"]})
    if connection_types.get_type(ctype).oauth:
        raise BadRequest(
            "OAuth2 requirements are linked through the authorization flow, not with credentials.",
            details={"type": ["oauth2 connections are authorized with the provider"]},
        )
    spec = requirement.spec or {}
    fixed = spec.get("config") or {}
    if isinstance(config, Mapping) and fixed:
        submitted = sorted(set(config) & set(fixed))
        if submitted:
            raise BadRequest(
                "Some fields are fixed by the application and cannot be submitted.",
                details={"config": {name: ["fixed by the application; leave it out"] for name in submitted}},
            )
        config = {**config, **fixed}
    try:
        normalized = connection_types.validate_config(ctype, config)
    except ConfigError as exc:
        raise BadRequest("Invalid connection config.", details={"config": exc.errors}) from exc
    probe = verify_credentials(type_name=ctype, config=normalized, verify=spec.get("verify"))
    if expected_account and not account_matches(expected=expected_account, account=probe.account):
        raise AccountMismatch(
            "These credentials belong to another account than the one this link is for."
            if probe.account else "This link is for a specific account, and these credentials could not "
            "be matched to an account.",
        )
    also = {"account": probe.account}
    if probe.verified:
        also["last_verified_at"] = timezone.now()
    actor = _end_user_actor(user_id)
    for attempt in range(2):
        try:
            with transaction.atomic():
                link = _save_locked(app=app, user_id=user_id, requirement=requirement, ctype=ctype,
                                    config=normalized, actor=actor, also=also)
            logger.info("end-user credentials saved for requirement %s (connection %s)", requirement.name,
                        link.connection_id)
            return link
        except IntegrityError:
            if attempt:  # two first links at once: the second one updates the first's connection
                raise
    raise AssertionError("unreachable")


def _save_locked(*, app: App, user_id: str, requirement: Requirement, ctype: str, config: dict, actor: str,
                 also: dict) -> EndUserLink:
    link = (
        EndUserLink.objects.select_for_update().select_related("connection")
        .filter(app=app, user_id=user_id, requirement=requirement).first()
    )
    link_flow = None
    if link is not None and link.connection.type == ctype:
        link.verification_flow = _credentials_replace(app=app, link=link, config=config, actor=actor, also=also)
        return link
    if link is not None:
        link.connection.delete()  # cascades to the stale link
    pending = verification.required(app)
    connection = connection_write_config(
        connection=Connection(
            project_id=app.project_id, name=f"{user_id} · {requirement.name}"[:200], type=ctype,
            status=Connection.Status.PENDING_VERIFICATION if pending else Connection.Status.ACTIVE,
            app=app, user_id=user_id, created_by=actor, **also,
        ),
        config=config, actor=actor,
    )
    link = EndUserLink.objects.create(app=app, user_id=user_id, requirement=requirement, connection=connection)
    if not pending:  # a link awaiting verification is announced when confirmed
        emit(LINK_CREATED, connection_id=connection.pk)
    else:
        link_flow = verification.flow_start(app=app, user_id=user_id, requirement=requirement, connection=connection,
                                            kind=ConnectFlow.Kind.LINK)
    link.verification_flow = link_flow
    return link


def _credentials_replace(*, app: App, link: EndUserLink, config: dict, actor: str, also: dict) -> ConnectFlow | None:
    """New credentials for a linked requirement (locked). A live link is reconnected in place (same ID), or,
    when the App verifies its users, the new config waits in a flow while the current one keeps serving. A
    link not live yet (waiting for verification) simply takes the new config, as a first link would."""
    connection = link.connection
    announced = reconnect.is_announced(connection)
    if verification.required(app):
        kind = ConnectFlow.Kind.RECONNECT if announced else ConnectFlow.Kind.LINK
        if not announced:
            connection_write_config(connection=connection, config=config, actor=actor,
                                    status=Connection.Status.PENDING_VERIFICATION, changes=also)
        return verification.flow_start(app=app, user_id=link.user_id, requirement=link.requirement,
                                       connection=connection, kind=kind, pending_config=config if announced else None,
                                       pending_also=also)
    if announced:
        reconnect.swap_in(connection=connection, config=config, actor=actor, also=also)
    else:  # the App stopped verifying while this link waited: it goes live now, as a first link
        connection_write_config(connection=connection, config=config, actor=actor, status=Connection.Status.ACTIVE,
                                changes=also)
        emit(LINK_CREATED, connection_id=connection.pk)
    return None


def end_user_authorize(
    *, app: App, user_id: str, requirement: Requirement, connect_token_id: str, browser_binding: str = "",
    return_to: str = "", expected_account: str = "",
) -> str:
    """Start the OAuth2 flow for an end user's requirement; returns the provider's authorization URL."""
    if connection_types.canonical_type(requirement.connection_type) != "oauth2":
        raise BadRequest("This requirement takes credentials, not an OAuth2 authorization.",
                         details={"requirement": ["not an oauth2 requirement"]})
    return end_user_oauth_authorization_start(
        app=app, user_id=user_id, requirement=requirement, connect_token_id=connect_token_id,
        browser_binding=browser_binding, return_to=return_to, expected_account=expected_account,
    )


@transaction.atomic
def end_user_oauth_authorization_start(
    *, app: App, user_id: str, requirement: Requirement, connect_token_id: str, browser_binding: str = "",
    return_to: str = "", expected_account: str = "",
) -> str:
    """Prepare the user's OAuth2 connection for `requirement` and return the provider URL that starts consent."""
    spec = requirement.spec or {}
    if spec.get("connection_type") != "oauth2":
        raise BadRequest("This requirement is not an OAuth2 connection.")
    provider = OAuthProvider.objects.filter(project=app.project_id, id=spec.get("provider_id")).first()
    if provider is None:
        raise NotFound("The OAuth2 provider of this requirement no longer exists.")
    scopes = list(spec.get("scopes") or provider.scopes or [])
    connection = end_user_oauth_connection_prepare(
        app=app, user_id=user_id, requirement=requirement, provider=provider, scopes=scopes
    )
    return oauth_flows.authorization_start(
        connection=connection, provider=provider, scopes=scopes, app=app, user_id=user_id, requirement=requirement,
        connect_token_id=connect_token_id, browser_binding=browser_binding, return_to=return_to,
        expected_account=expected_account,
    )


def end_user_oauth_connection_prepare(
    *, app: App, user_id: str, requirement: Requirement, provider: OAuthProvider, scopes: list[str]
) -> Connection:
    """Create (or reuse) the user's OAuth2 connection for `requirement`, linked at once (in the caller's
    transaction). A new one is `incomplete` until consent; a user re-authorizing keeps their current
    connection (and its tokens) until the new tokens arrive.

    No config-history row: nothing secret is written here (provider, API URL, scopes); the token store
    that completes the flow writes the first one.
    """
    spec = requirement.spec or {}
    link = (
        EndUserLink.objects.select_for_update().select_related("connection")
        .filter(app=app, user_id=user_id, requirement=requirement).first()
    )
    # The builder fixes where the token may go (SPEC §12/§13): without it the connection could never be
    # used (origin_not_allowed at run time), so refuse before the user consents.
    url = ((spec.get("config") or {}).get("url") or "").strip()
    if not url:
        raise BadRequest(
            "This requirement fixes no API URL for its OAuth2 connections; the App's builder must add "
            "spec.config.url (recreate the requirement)."
        )
    if link is not None and link.connection.type == "oauth2":
        connection = link.connection
        fields = []
        if connection.provider_id != provider.id:
            connection.provider = provider
            fields.append("provider")
        if (connection.config or {}).get("url") != url:
            # Tokens are (re)issued by the flow this call starts; they may go only to the requirement's origin.
            connection.config = {**(connection.config or {}), "url": url}
            fields.append("config")
        if fields:
            connection.save(update_fields=[*fields, "updated_at"])
        return connection
    if link is not None:  # a stale link of another type: replace its connection
        link.connection.delete()
    actor = _end_user_actor(user_id)
    connection = Connection.objects.create(
        project_id=app.project_id, name=f"{user_id} · {requirement.name}"[:200], type="oauth2",
        config={"provider_id": str(provider.id), "url": url, "scopes": scopes}, status=Connection.Status.INCOMPLETE,
        app=app, user_id=user_id, provider=provider, created_by=actor, updated_by=actor,
    )
    try:
        with transaction.atomic():
            EndUserLink.objects.create(app=app, user_id=user_id, requirement=requirement, connection=connection)
    except IntegrityError as exc:
        raise Conflict("Another authorization for this requirement started at the same time; try again.") from exc
    return connection


def oauth_authorization_complete(*, state: str, code: str, browser_binding: str = "") -> OAuthState:
    """Finish the flow the provider redirected back with (project or end-user connection): the connection
    gets its tokens and turns active; an end user's link points at it.

    An end user's live link is reconnected in place (the old grant revoked upstream after the swap); with the
    App verifying its users, the result waits for the App's confirmation instead (`record.verification_flow`).
    Raises OAuthFlowError for an unknown, replayed or expired state, a browser mismatch or a provider
    refusal. The returned OAuthState says where to send the browser (`return_to`) and for whom it was.
    """
    record = oauth_state.state_consume(state=state, browser_binding=browser_binding)
    token = oauth_flows.authorization_code_exchange(record=record, code=code)
    record.verification_flow = None
    account = _oauth_account(record=record, token=token)
    with transaction.atomic():
        if not (record.app_id and record.requirement_id):
            connection = oauth_flows.authorized_tokens_store(record=record, token=token, account=account)
        else:
            connection, record.verification_flow = _end_user_tokens_arrive(record=record, token=token, account=account)
            _end_user_link_point(record=record, connection=connection)
    record.connection = connection
    return record


def _end_user_tokens_arrive(*, record: OAuthState, token: dict,
                            account: dict | None) -> tuple[Connection, ConnectFlow | None]:
    """Inside the transaction: the end user's new grant meets their connection (locked)."""
    locked = Connection.objects.select_for_update().filter(pk=record.connection_id).first()
    if locked is None:
        raise OAuthFlowError("The connection was removed while authorizing.", code="invalid_state")
    actor = _end_user_actor(record.user_id)
    tokens = token_set(token, previous=locked.config or {})
    app = record.app
    if reconnect.is_announced(locked):
        if verification.required(app):  # the current grant keeps serving until the App confirms
            return locked, verification.flow_start(
                app=app, user_id=record.user_id, requirement=record.requirement, connection=locked,
                kind=ConnectFlow.Kind.RECONNECT, pending_config=tokens, pending_also={"account": account},
            )
        reconnect.swap_in(connection=locked, config=tokens, actor=actor, also={"account": account})
        return locked, None
    # A first link (or one still waiting for verification, whose earlier pending grant is now replaced).
    previous = dict(locked.config or {})
    oauth_flows.tokens_store(connection=locked, tokens=tokens, actor=actor, also={"account": account})
    reconnect.revoke_after_commit(connection=locked, config=previous)
    if not verification.required(app):
        # Under the lock, from unannounced to active: exactly one link.created (a second consent is a reconnect).
        emit(LINK_CREATED, connection_id=locked.pk)
        return locked, None
    locked.status = Connection.Status.PENDING_VERIFICATION
    locked.save(update_fields=["status", "updated_at"])
    return locked, verification.flow_start(app=app, user_id=record.user_id, requirement=record.requirement,
                                           connection=locked, kind=ConnectFlow.Kind.LINK)


def _oauth_account(*, record: OAuthState, token: dict) -> dict | None:
    """The account behind the new grant, from the provider's `userinfo_url` (SPEC §13), before anything is stored.

    A userinfo failure stores the connection without an account (the grant itself is good, and the account is
    shown, not relied on), except when the flow's connect token expects an account: then it cannot be checked,
    and the grant is refused like another account's. A refused grant is revoked upstream (best effort) and
    nothing is stored: the connection keeps its previous tokens (or stays `incomplete`).
    """
    provider = oauth_flows.provider_of(record.connection)
    try:
        account = fetch_userinfo(provider=provider, access_token=str(token.get("access_token") or ""))
    except VerificationFailed as exc:
        if not record.expected_account:
            logger.warning("oauth2 userinfo failed for connection %s: %s; stored without an account",
                           record.connection_id, exc.message)
            return None
        account = None
    if record.expected_account and not account_matches(expected=record.expected_account, account=account):
        oauth_flows.revoke_token_set(provider=provider, token=token)
        raise AccountMismatch(
            "You authorized another account than the one this link is for. Nothing was connected."
            if account else "The provider did not say which account you authorized, and this link is for a "
            "specific account. Nothing was connected."
        )
    return account


def _end_user_link_point(*, record: OAuthState, connection: Connection) -> None:
    """The link of the flow's (app, user, requirement) points at the freshly authorized connection."""
    link = EndUserLink.objects.filter(app=record.app_id, user_id=record.user_id, requirement=record.requirement_id).first()
    if link is None:
        EndUserLink.objects.create(
            app_id=record.app_id, user_id=record.user_id, requirement_id=record.requirement_id, connection=connection
        )
    elif link.connection_id != connection.pk:
        old = link.connection
        link.connection = connection
        link.save(update_fields=["connection", "updated_at"])
        old.delete()


def link_revoke(*, link: EndUserLink) -> dict:
    """Unlink: revoke the grant upstream where the provider supports it (RFC 7009), then delete the
    link and its connection. The answer reports the outcome: `revoked_upstream` is True, False (the
    provider refused or could not be reached) or None (nothing to revoke, or no revocation URL).
    """
    connection = link.connection
    revoked = oauth_flows.revoke_upstream(connection=connection) if connection.type == "oauth2" else None
    with transaction.atomic():
        # Deleting the connection deletes the link with it (EndUserLink.connection cascades). The row lock makes a
        # concurrent unlink wait, then find nothing: `link.deleted` is sent once, before the rows go.
        if Connection.objects.select_for_update().filter(pk=connection.pk).values_list("pk", flat=True):
            emit(LINK_DELETED, connection_id=connection.pk)
            Connection.objects.filter(pk=connection.pk).delete()
    return {"message": "unlinked", "revoked_upstream": revoked}


def end_user_unlink(*, app: App, user_id: str, requirement: Requirement) -> dict:
    link = end_user_link(app=app, user_id=user_id, requirement=requirement)
    if link is None:
        raise NotFound("Nothing is linked for this requirement.")
    return link_revoke(link=link)
