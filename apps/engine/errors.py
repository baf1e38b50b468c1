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


class TemplateLimitError(NodeError):
    """A template went over its render budget (output, width, loop steps, time...): node error `template_limit`.

    A NodeError rather than a jinja2.TemplateError so that no layer mistakes it for a bug in the template's
    text: `limit` names the budget that ran out (`output_chars`, `width`, `loop_steps`, `render_seconds`,
    `built_chars`, `recursion`).
    """

    def __init__(self, limit: str, message: str) -> None:
        super().__init__("template_limit", message, limit=limit)


class PathErrors(dict):
    """Validation errors keyed by a path into a definition (`nodes.2.config.query`), in the order found."""

    def add(self, path: str, message: str) -> None:
        self.setdefault(path, []).append(message)
