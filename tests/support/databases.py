"""The test process's default database connection pointed elsewhere for a block."""

from __future__ import annotations

from contextlib import contextmanager

from django.db import connections


@contextmanager
def default_database(**overrides):
    """Swap the default connection for one made from its settings with `overrides` (NAME, HOST, PORT...);
    the original connection and settings are back after the block."""
    original_settings = connections.settings["default"]
    original = connections["default"]
    connections.settings["default"] = {**original_settings, **overrides}
    swapped = connections.create_connection("default")
    connections["default"] = swapped
    try:
        yield
    finally:
        swapped.close()
        connections["default"] = original
        connections.settings["default"] = original_settings
