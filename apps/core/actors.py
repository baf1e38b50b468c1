"""Who did it: a short label recorded on writes (history, versions, deployments). Never a secret."""

from __future__ import annotations

from typing import Any


def actor_label(actor: Any) -> str:
    """`user:alice`, `access_key:dynamiq_acc_ab12…9xyz`, `system`, or a label passed through."""
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    preview = getattr(actor, "preview", None)
    if preview:  # an AccessKey
        return f"access_key:{preview}"
    username = getattr(actor, "get_username", None)
    if callable(username):
        return f"user:{username()}"
    return str(actor)[:200]
