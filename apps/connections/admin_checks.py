"""The admin's "test connection" action: one cheap, real request per connection, reporting only an outcome.

Never reports a response body or headers (an upstream may echo credentials); every message goes through
the engine's masker for the connection's secrets as well. Outbound requests use the SSRF-guarded client.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
from django.conf import settings

from apps.engine.errors import NodeError
from apps.engine.http_merge import prepare_http_request
from apps.engine.masking import Masker, connection_secrets
from apps.engine.netguard import BlockedAddressError, checked_addresses, make_http_client

from .models import Connection
from .resolved import to_resolved_connection

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str


def _http_check(connection: Connection) -> CheckResult:
    if connection.type == "http" and not (connection.config or {}).get("url"):
        return CheckResult(False, "no base URL configured: nothing to test (nodes give the URL)")
    # GET only: a test must not create anything upstream, whatever method the connection declares.
    prepared = prepare_http_request(connection=to_resolved_connection(connection), config={"method": "GET"})
    with make_http_client(allow_private=settings.ALLOW_PRIVATE_NETWORK_TARGETS, timeout=TIMEOUT_SECONDS,
                          follow_redirects=False) as client:
        response = client.request(prepared.method, prepared.url, headers=prepared.headers, params=prepared.params)
    return _status_result(response.status_code)


def _status_result(status: int) -> CheckResult:
    if status < 400:
        return CheckResult(True, f"HTTP {status}")
    if status in (401, 403):
        return CheckResult(False, f"HTTP {status}: the server rejected the credentials")
    return CheckResult(False, f"HTTP {status}")


def _openai_check(connection: Connection) -> CheckResult:
    cfg = connection.config or {}
    base_url = (cfg.get("base_url") or "https://api.openai.com/v1").rstrip("/")
    headers = {"Authorization": f"Bearer {cfg.get('api_key', '')}"}
    if cfg.get("organization"):
        headers["OpenAI-Organization"] = cfg["organization"]
    with make_http_client(allow_private=settings.ALLOW_PRIVATE_NETWORK_TARGETS, timeout=TIMEOUT_SECONDS,
                          follow_redirects=False) as client:
        response = client.get(f"{base_url}/models", headers=headers)
    return _status_result(response.status_code)


def _postgresql_check(connection: Connection) -> CheckResult:
    # Imported on use: only the admin's test of a postgresql connection needs the driver, and loading it
    # at import would make every process that imports the admin pay for it (and fail where it is absent).
    import psycopg

    cfg = connection.config or {}
    host, port = str(cfg.get("host") or ""), int(cfg.get("port") or 5432)
    kwargs = {
        "host": host, "port": port, "dbname": cfg.get("database"), "user": cfg.get("user"),
        "password": cfg.get("password") or None, "sslmode": cfg.get("sslmode") or "prefer",
        "connect_timeout": int(TIMEOUT_SECONDS),
        # The same session guard as SQL nodes, although the check only sends a constant SELECT 1.
        "options": "-c statement_timeout=10000 -c default_transaction_read_only=on",
    }
    if not settings.ALLOW_PRIVATE_NETWORK_TARGETS:
        kwargs["hostaddr"] = checked_addresses(host, port, allow_private=False)[0]
    try:
        with psycopg.connect(**kwargs) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except psycopg.Error as exc:
        text = str(exc).strip()
        return CheckResult(False, f"could not connect: {text.splitlines()[0] if text else type(exc).__name__}")
    return CheckResult(True, "connected, SELECT 1 answered")


def _oauth2_check(connection: Connection) -> CheckResult:
    cfg = connection.config or {}
    if not cfg.get("access_token"):
        return CheckResult(False, f"no access token yet (status {connection.status}): authorize the connection first")
    expires_at = cfg.get("expires_at")
    has_refresh = bool(cfg.get("refresh_token"))
    refresh_note = "a refresh token is stored" if has_refresh else "no refresh token is stored"
    if not isinstance(expires_at, int):
        return CheckResult(True, f"access token stored without an expiry; {refresh_note}")
    remaining = expires_at - int(time.time())
    if remaining > 0:
        return CheckResult(True, f"access token valid for another {remaining // 60} min; {refresh_note}")
    if has_refresh:
        return CheckResult(True, f"access token expired {-remaining // 60} min ago; it will be refreshed on next use")
    return CheckResult(False, f"access token expired {-remaining // 60} min ago and cannot be refreshed")


CHECKS = {
    "http": _http_check,
    "http_api_key": _http_check,
    "openai": _openai_check,
    "postgresql": _postgresql_check,
    "oauth2": _oauth2_check,
}


def check_connection(connection: Connection) -> CheckResult:
    # connection_secrets also derives the parts of e.g. `Bearer X` / `Basic ...` header values.
    masker = Masker(connection_secrets(to_resolved_connection(connection)))
    try:
        result = CHECKS[connection.type](connection)
    except BlockedAddressError as exc:
        result = CheckResult(False, f"refused by the network guard ({exc.code}): {exc}")
    except NodeError as exc:
        result = CheckResult(False, str(exc))
    except httpx.TimeoutException:
        result = CheckResult(False, f"timed out after {TIMEOUT_SECONDS:g} s")
    except httpx.HTTPError as exc:
        result = CheckResult(False, f"request failed ({type(exc).__name__})")
    except (OSError, ValueError) as exc:
        result = CheckResult(False, f"failed ({type(exc).__name__})")
    return CheckResult(result.ok, masker.mask_text(result.message))
