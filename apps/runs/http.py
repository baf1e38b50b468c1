"""Process-wide SSRF-guarded HTTP clients (keep-alive pooling across runs; httpx.Client is thread-safe),
one per setting of the guard and per client flavour. Shared between runs and tenants, so they are
StatelessClients: no cookie jar, no client-level auth or headers (SPEC 12)."""

from __future__ import annotations

import threading

import httpx
from django.conf import settings

from apps.engine import make_http_client

_clients: dict[tuple, httpx.Client] = {}
_lock = threading.Lock()


def guarded_client(*, follow_redirects: bool = True, timeout: float = 30.0) -> httpx.Client:
    key = (bool(settings.ALLOW_PRIVATE_NETWORK_TARGETS), follow_redirects, timeout)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = make_http_client(
                    allow_private=key[0], follow_redirects=follow_redirects, timeout=timeout
                )
    return client


def http_client() -> httpx.Client:
    """The engine's client for the HTTP and LLM nodes of runs."""
    return guarded_client()
