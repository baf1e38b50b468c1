"""Secret masking: every secret the engine resolved for a run is replaced by `********` wherever it shows.

Besides the raw value, the forms an upstream or a template is likely to echo are masked too: base64
(standard and URL-safe, with and without padding, as in Basic auth or JWT-ish echoes) and URL-encoded
(`quote`, `quote_plus`, as in an echoed query string). One compiled alternation, longest form first, so a
longer form is never left half-masked by a shorter one.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

from .connection_types import MASK, secret_values
from .types import ResolvedConnection

MIN_SECRET_LENGTH = 4  # shorter values would mask half the output ("1", "on", "GET")


def secret_forms(secret: str) -> set[str]:
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms.add(encoded)
        forms.add(encoded.rstrip("="))
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


@lru_cache(maxsize=256)
def _compile(secrets: frozenset[str]) -> re.Pattern[str] | None:
    forms: set[str] = set()
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LENGTH:
            forms |= secret_forms(secret)
    if not forms:
        return None
    return re.compile("|".join(re.escape(form) for form in sorted(forms, key=lambda f: (-len(f), f))))


def connection_secrets(connection: ResolvedConnection) -> list[str]:
    found = secret_values(connection.type, connection.config)
    if connection.type == "http_api_key":
        api_key = connection.config.get("api_key")
        prefix = connection.config.get("prefix")
        prefix = "Bearer " if prefix is None else prefix  # the default http_merge applies
        if api_key and prefix:
            found.append(f"{prefix}{api_key}")
    return found


class Masker:
    """`Masker(secrets).mask(obj)` returns obj with every secret form replaced. Compiled once per secret set."""

    __slots__ = ("secrets", "_pattern")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = frozenset(str(s) for s in secrets if s)
        self._pattern = _compile(self.secrets)

    @classmethod
    def for_connections(cls, connections: Iterable[ResolvedConnection]) -> Masker:
        secrets: list[str] = []
        for connection in connections:
            secrets.extend(connection_secrets(connection))
        return cls(secrets)

    def extended(self, secrets: Iterable[str]) -> Masker:
        return Masker([*self.secrets, *secrets])

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask_text(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def mask(self, obj: Any) -> Any:
        """Walk str/dict/list/tuple; keys are masked too (a secret should never be a key, but cheap)."""
        if self._pattern is None:
            return obj
        return self._walk(obj, self._pattern.sub)

    def _walk(self, obj: Any, sub) -> Any:
        if isinstance(obj, str):
            return sub(MASK, obj)
        if isinstance(obj, Mapping):
            return {
                (sub(MASK, k) if isinstance(k, str) else k): self._walk(v, sub) for k, v in obj.items()
            }
        if isinstance(obj, (list, tuple)):
            return [self._walk(item, sub) for item in obj]
        return obj
