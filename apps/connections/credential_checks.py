"""Verification at link time and account identity (SPEC §13), on the platform side of the engine's probes.

`verify_credentials` runs a requirement's probe (or the type's default) against freshly submitted credentials
before anything is stored; `fetch_userinfo` reads an OAuth2 provider's userinfo with a fresh access token.
Both go through the SSRF-guarded client with a 5 s budget and report outcomes only: never an upstream body,
never a secret.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

from apps.core.errors import ApplicationError
from apps.engine import make_http_client, probes
from apps.engine.masking import Masker
from apps.engine.netguard import BlockedAddressError
from apps.engine.types import ResolvedConnection

from .models import OAuthProvider

logger = logging.getLogger(__name__)

BUDGET_SECONDS = 5.0
USERINFO_MAX_BYTES = 64 * 1024


class CredentialsInvalid(ApplicationError):
    """The service answered the verification request with 401/403: the credentials are wrong."""

    code, status = "credentials_invalid", 422


class VerificationFailed(ApplicationError):
    """The verification request failed for another reason (timeout, refused target, 5xx, unexpected status)."""

    code, status = "verification_failed", 422


class AccountMismatch(ApplicationError):
    """The credentials belong to another account than the connect token's `expected_account`."""

    code, status = "account_mismatch", 422


def _client(*, follow_redirects: bool) -> httpx.Client:
    return make_http_client(
        allow_private=settings.ALLOW_PRIVATE_NETWORK_TARGETS, timeout=BUDGET_SECONDS, follow_redirects=follow_redirects
    )


@dataclass(frozen=True)
class Verification:
    verified: bool  # a probe ran and passed (False: there was nothing to probe)
    account: dict | None = None  # {"id", "label"} when the probe declares where the answer names it


def verify_credentials(*, type_name: str, config: Mapping[str, Any], verify: Any) -> Verification:
    """Run the probe for these (validated, not yet stored) credentials, or raise CredentialsInvalid /
    VerificationFailed.

    `verify`: the requirement's `spec.verify` (None: the type's default probe, if it has one; False: none).
    """
    spec = probes.probe_for(type_name, verify) if verify is not False else None
    if spec is None:
        return Verification(verified=False)
    connection = ResolvedConnection(connection_id="", type=type_name, config=dict(config), owner="end_user")
    with _client(follow_redirects=False) as client:
        outcome = probes.run_probe(client, connection, spec, budget_seconds=BUDGET_SECONDS)
    if outcome.outcome == "credentials_invalid":
        logger.info("link-time verification: credentials rejected (HTTP %s)", outcome.status_code)
        raise CredentialsInvalid(
            "The service rejected these credentials. Check them and try again.",
            details={"status_code": outcome.status_code},
        )
    if outcome.outcome == "verification_failed":
        logger.info("link-time verification failed: %s", outcome.message)
        details = {"status_code": outcome.status_code} if outcome.status_code is not None else {}
        raise VerificationFailed(f"The credentials could not be verified: {outcome.message}", details=details)
    return Verification(verified=True, account=outcome.account)


def account_from_userinfo(data: Any) -> dict | None:
    """`{"id": sub|id, "label": email|login|name}` from an OpenID Connect / GitHub-style userinfo answer."""
    if not isinstance(data, Mapping):
        return None

    def text(key: str) -> str | None:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return None
        return str(value).strip()[: probes.MAX_ACCOUNT_TEXT] or None

    account_id = text("sub") or text("id")
    if account_id is None:
        return None
    label = text("email") or text("login") or text("name") or account_id
    return {"id": account_id, "label": label}


def fetch_userinfo(*, provider: OAuthProvider, access_token: str) -> dict | None:
    """The account behind a fresh access token, from the provider's `userinfo_url`; None when the provider has
    none. Raises VerificationFailed when it has one and the answer is unusable (the caller decides)."""
    if not provider.userinfo_url:
        return None
    masker = Masker([access_token])
    try:
        with _client(follow_redirects=False) as client, client.stream(
            "GET", provider.userinfo_url,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        ) as response:
            status = response.status_code
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > USERINFO_MAX_BYTES:
                    raise VerificationFailed("The provider's userinfo answer is too large.")
    except BlockedAddressError as exc:
        raise VerificationFailed("The provider's userinfo URL is not allowed.") from exc
    except httpx.TimeoutException as exc:
        raise VerificationFailed(f"The provider's userinfo did not answer within {BUDGET_SECONDS:g} seconds.") from exc
    except httpx.HTTPError as exc:
        raise VerificationFailed(f"The provider's userinfo request failed ({type(exc).__name__}).") from exc
    if status != 200:
        raise VerificationFailed(f"The provider's userinfo answered HTTP {status}.", details={"status_code": status})
    try:
        account = account_from_userinfo(json.loads(body))
    except ValueError:
        account = None
    if account is None:
        raise VerificationFailed("The provider's userinfo answer names no account (sub or id).")
    return {key: masker.mask_text(value) for key, value in account.items()}


def account_matches(*, expected: str, account: Mapping[str, Any] | None) -> bool:
    """`expected_account` names the account by its id (exactly, as the upstream spells it)."""
    return account is not None and str(account.get("id")) == expected
