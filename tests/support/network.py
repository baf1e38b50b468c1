"""Network guards for tests of the SSRF guard."""

from __future__ import annotations

import socket


class NoConnect:
    """Fails the test if anything tries to open a TCP connection (the guard must refuse first)."""

    def __enter__(self):
        self._original = socket.create_connection

        def refuse(address, *args, **kwargs):
            raise AssertionError(f"connection attempted to {address}")

        socket.create_connection = refuse
        return self

    def __exit__(self, *exc):
        socket.create_connection = self._original
