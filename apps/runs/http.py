"""One SSRF-guarded HTTP client per process (keep-alive pooling across runs; httpx.Client is thread-safe)."""

from __future__ import annotations

import threading

import httpx
from django.conf import settings

from apps.engine import make_http_client

_clients: dict[bool, httpx.Client] = {}
_lock = threading.Lock()


def http_client() -> httpx.Client:
    allow_private = bool(settings.ALLOW_PRIVATE_NETWORK_TARGETS)
    client = _clients.get(allow_private)
    if client is None:
        with _lock:
            client = _clients.get(allow_private)
            if client is None:
                client = _clients[allow_private] = make_http_client(allow_private=allow_private)
    return client
