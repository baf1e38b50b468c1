"""The OAuth2 client: authorization URL with PKCE S256, code exchange, refresh, RFC 7009 revocation.

No database access here: callers pass an OAuthProvider and get tokens or a failure back.
- Every outbound call goes through the SSRF-guarded transport (apps.engine.netguard), keeps no cookie jar,
  never follows redirects (a token request must not be replayed elsewhere), and nothing secret is logged.
- authlib builds the authorization URL and PKCE challenge, and its `OAuth2Token` turns `expires_in` into
  `expires_at` and answers `is_expired(leeway=...)`. The three token-endpoint POSTs are made here, with our
  httpx client, not through authlib's httpx integration: that one switches to the `httpx2` package whenever
  it is installed (the `mcp` SDK brings it), and then refuses our httpx transport (docs/decisions.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.base_client.errors import OAuthError
from authlib.oauth2.rfc6749 import OAuth2Token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from django.conf import settings

from apps.core.errors import ApplicationError
from apps.engine.netguard import BlockedAddressError, GuardedHTTPTransport, NoCookiesMixin

from .models import OAuthProvider

CALLBACK_PATH = "/connect/oauth2/callback"
REFRESH_MARGIN_SECONDS = 60
HTTP_TIMEOUT_SECONDS = 15.0
TOKEN_FIELDS = ("access_token", "refresh_token", "expires_at", "scope", "token_type")


class OAuthFlowError(ApplicationError):
    """The authorization flow cannot complete (unknown, used or expired state; provider refusal)."""

    code, status = "oauth_error", 400


@dataclass
class ProviderFailure:
    """Why a code exchange failed, as a code only: a provider's or the network's text is never echoed."""

    error: str


def redirect_uri() -> str:
    """The one redirect URI registered with every provider: exact, never built from the request."""
    return settings.PLATFORM_URL.rstrip("/") + CALLBACK_PATH


class _TokenClient(NoCookiesMixin, httpx.Client):
    """httpx without a cookie jar: a provider's Set-Cookie is never sent back (SPEC 12)."""


def client(provider: OAuthProvider) -> httpx.Client:
    return _TokenClient(
        transport=GuardedHTTPTransport(allow_private=settings.ALLOW_PRIVATE_NETWORK_TARGETS),
        trust_env=False,
        follow_redirects=False,
        timeout=HTTP_TIMEOUT_SECONDS,
    )


MAX_ANSWER_BYTES = 256 * 1024  # a token set is a few KB; the endpoint is a URL a project's admin typed


class AnswerTooLarge(ValueError):
    """The token endpoint answered more than MAX_ANSWER_BYTES (never read whole into a worker's memory)."""


def _post_form(provider: OAuthProvider, url: str, form: dict[str, str]) -> httpx.Response:
    """One token-endpoint POST, the client authenticated with client_secret_post (accepted by the common
    providers; RFC 6749 2.3.1 allows it). The answer is read up to MAX_ANSWER_BYTES, then hung up on."""
    body = {**form, "client_id": provider.client_id, "client_secret": provider.client_secret or ""}
    with client(provider) as http, http.stream("POST", url, data=body, headers={"Accept": "application/json"}) as answer:
        content, size = [], 0
        for chunk in answer.iter_bytes():
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise AnswerTooLarge(f"token endpoint answer over {MAX_ANSWER_BYTES} bytes")
            content.append(chunk)
    # The decoded body, without the headers that described the encoded one.
    headers = [(k, v) for k, v in answer.headers.items() if k.lower() not in ("content-encoding", "content-length")]
    return httpx.Response(answer.status_code, headers=headers, content=b"".join(content), request=answer.request)


def _token_answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a token-endpoint answer (RFC 6749 5.1/5.2). An error object raises OAuthError (its
    `error` code); a 5xx or a body that is not a JSON object raises httpx.HTTPStatusError (4xx/5xx) or
    ValueError, so the caller can tell a refusal from a broken endpoint."""
    if response.status_code >= 500:
        response.raise_for_status()
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        response.raise_for_status()
        raise ValueError(f"token endpoint answer is not a JSON object (HTTP {response.status_code})")
    if "error" in answer:
        raise OAuthError(error=answer["error"], description=answer.get("error_description"))
    return answer


def authorization_url(*, provider: OAuthProvider, scopes: list[str], state: str, code_verifier: str) -> str:
    params: dict[str, Any] = {"redirect_uri": redirect_uri()}
    if scopes:
        params["scope"] = " ".join(scopes)
    if provider.pkce:
        params["code_challenge"] = create_s256_code_challenge(code_verifier)
        params["code_challenge_method"] = "S256"
    return prepare_grant_uri(provider.authorize_url, client_id=provider.client_id, response_type="code", state=state, **params)


def exchange_code(*, provider: OAuthProvider, code: str, code_verifier: str, redirect: str) -> OAuth2Token | ProviderFailure:
    kwargs: dict[str, Any] = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}
    if provider.pkce:
        kwargs["code_verifier"] = code_verifier
    try:
        return OAuth2Token.from_dict(_token_answer(_post_form(provider, provider.token_url, kwargs)))
    except OAuthError as exc:
        return ProviderFailure(str(exc.error or "oauth_error"))
    except BlockedAddressError as exc:
        return ProviderFailure(exc.code)  # the guard's one code: no hint whether the name resolved
    except Exception as exc:  # network errors, non-JSON answers: never echo their text
        return ProviderFailure(type(exc).__name__)


class RefreshError(Exception):
    """A refresh grant that gave no token set, classified (SPEC §13 "Health and proactive refresh").

    `kind`: INVALID_GRANT (the refresh token is refused: the grant is gone), UNAUTHORIZED (the provider refuses
    the platform's client: HTTP 401, invalid_client, unauthorized_client) or TRANSIENT (anything else: network,
    timeout, guard, 5xx, 429, an unreadable or incomplete answer). `reason`: short, for status_reason and logs:
    an RFC 6749 error code, an HTTP status or an exception class, never the provider's text.
    """

    INVALID_GRANT, UNAUTHORIZED, TRANSIENT = "invalid_grant", "unauthorized", "transient"

    def __init__(self, kind: str, reason: str):
        super().__init__(f"{kind}: {reason}")
        self.kind, self.reason = kind, reason


# RFC 6749 5.2 codes (+ RFC 6749 4.1.2.1's temporarily_unavailable), the only provider words kept in a reason.
_RFC6749_ERRORS = frozenset({
    "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
    "invalid_scope", "temporarily_unavailable", "server_error",
})


def _refusal(error: object, status: int | None) -> RefreshError:
    code = str(error) if str(error) in _RFC6749_ERRORS else "oauth_error"
    if code == "invalid_grant":
        return RefreshError(RefreshError.INVALID_GRANT, code)
    if status == 401 or code in ("invalid_client", "unauthorized_client"):
        return RefreshError(RefreshError.UNAUTHORIZED, code)
    return RefreshError(RefreshError.TRANSIENT, code if status is None else f"{code} (HTTP {status})")


def refresh(*, provider: OAuthProvider, refresh_token: str) -> OAuth2Token:
    """The provider's answer to a refresh grant; raises RefreshError (classified) when there is no token set."""
    response = None
    try:
        response = _post_form(provider, provider.token_url,
                              {"grant_type": "refresh_token", "refresh_token": refresh_token})
        token = _token_answer(response)
        # No new refresh token in the answer: the stored one stays valid (RFC 6749 6).
        token.setdefault("refresh_token", refresh_token)
        answer = OAuth2Token.from_dict(token)
    except OAuthError as exc:
        raise _refusal(exc.error, response.status_code if response is not None else None) from None
    except httpx.HTTPStatusError as exc:  # a non-JSON error page, or any 5xx
        status = exc.response.status_code
        kind = RefreshError.UNAUTHORIZED if status == 401 else RefreshError.TRANSIENT
        raise RefreshError(kind, f"HTTP {status}") from None
    except BlockedAddressError as exc:
        raise RefreshError(RefreshError.TRANSIENT, exc.code) from None
    except httpx.TimeoutException:
        raise RefreshError(RefreshError.TRANSIENT, "timeout") from None
    except Exception as exc:  # network errors, malformed answers: never echo their text
        raise RefreshError(RefreshError.TRANSIENT, type(exc).__name__) from None
    if not isinstance(answer.get("access_token"), str) or not answer["access_token"]:
        raise RefreshError(RefreshError.TRANSIENT, "no access token in the answer")
    return answer


def revoke(*, provider: OAuthProvider, token: str, hint: str) -> int:
    """RFC 7009 revocation; returns the provider's HTTP status. Raises on a network or guard failure."""
    return _post_form(provider, provider.revoke_url, {"token": token, "token_type_hint": hint}).status_code


def token_set(token: dict[str, Any], *, previous: dict[str, Any]) -> dict[str, Any]:
    """The token fields to store from a provider answer (`previous`: the stored config)."""
    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise OAuthFlowError("The provider answered without an access token.", code="provider_error")
    result: dict[str, Any] = {"access_token": access_token, "token_type": str(token.get("token_type") or "Bearer")}
    # A response without a new refresh token keeps the old one (RFC 6749 6: the server MAY issue one).
    refresh_token = token.get("refresh_token") or previous.get("refresh_token")
    if refresh_token:
        result["refresh_token"] = str(refresh_token)
    expires_at = token.get("expires_at")
    if not isinstance(expires_at, int) and isinstance(token.get("expires_in"), (int, float, str)):
        # authlib computes expires_at = now + expires_in; a value it cannot read means "unknown expiry".
        try:
            expires_at = OAuth2Token({"expires_in": int(float(token["expires_in"]))}).get("expires_at")
        except ValueError:
            expires_at = None
    if isinstance(expires_at, int):
        result["expires_at"] = expires_at
    scope = token.get("scope", previous.get("scope"))
    if isinstance(scope, list):
        scope = " ".join(scope)
    if scope:
        result["scope"] = str(scope)
    return result


def near_expiry(config: dict[str, Any]) -> bool:
    """The stored token expires within REFRESH_MARGIN_SECONDS (or has expired); False when its expiry is unknown."""
    expires_at = config.get("expires_at")
    if not isinstance(expires_at, int):
        return False
    return bool(OAuth2Token({"expires_at": expires_at}).is_expired(leeway=REFRESH_MARGIN_SECONDS))
