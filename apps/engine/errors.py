"""Exceptions the engine raises inside a node; each becomes a node failure `{"type", "message", ...}`."""

from __future__ import annotations

from typing import Any


class NodeError(Exception):
    """A node failed in an expected way. `type` is a stable machine code, `extra` goes into the error dict."""

    def __init__(self, type: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.type = type
        self.message = message
        self.extra = extra

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, **self.extra}


class RunCanceled(Exception):
    """Raised inside a node (e.g. between streamed chunks) when the run was canceled."""
