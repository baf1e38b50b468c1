"""Secret masking: every secret the engine resolved for a run is replaced by `********` wherever it shows.

Besides the raw value, the forms an upstream or a template is likely to echo are masked too:
- base64, standard and URL-safe alphabets: the whole encoding (with and without padding) and the secret
  embedded at any of the three byte alignments inside a larger blob (`base64("Authorization: Bearer X")`);
- escapes, character by character and in any mix: percent-encoding with either hex case (`%2f`, `%2F`,
  `+` for a space), JSON string escapes (`\\/`, `\\"`, `\\\\`, `\\u00e9`) and HTML entities (`&amp;`).
Every form becomes one regex fragment; all fragments of a secret set are compiled once into one alternation,
longest first, so a longer form is never left half-masked by a shorter one.

`connection_secrets` also derives what a credential-bearing value contains: the credential after an auth
scheme word (`Bearer X`, `Token X`, `Basic B64` -> `X`, `B64`) and, for Basic, the decoded `user:pass` and
the password alone.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from .connection_types import MASK, secret_values
from .types import ResolvedConnection

MIN_SECRET_LENGTH = 4  # shorter values would mask half the output ("1", "on", "GET")

# Characters a percent-encoder leaves alone (RFC 3986 unreserved): every other one may show as %HH.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                 "\t": "\\t"}
_HTML_ENTITIES = {"&": ("&amp;", "&#38;"), "<": ("&lt;", "&#60;"), ">": ("&gt;", "&#62;"),
                  '"': ("&quot;", "&#34;"), "'": ("&#x27;", "&#39;")}
# `Bearer X`, `Token X`, `Basic B64`, `Digest ...`: a scheme word, whitespace, the credential.
_AUTH_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.+-]*)\s+(\S.*?)\s*$", re.DOTALL)


def _hex(byte: int) -> str:
    """`%2f` or `%2F`: a regex for one percent-encoded byte in either case."""
    return "%" + "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{byte:02X}")


def _char_options(char: str) -> list[tuple[str, int]]:
    """(regex, length of the text it matches) for each way one character of a secret may be written."""
    if char in _UNRESERVED:
        return [(re.escape(char), 1)]
    utf8 = char.encode("utf-8", "surrogatepass")
    options = [(re.escape(char), 1), ("".join(_hex(b) for b in utf8), 3 * len(utf8))]
    if char == " ":
        options.append((r"\+", 1))
    if char in _JSON_ESCAPES:
        options.append((re.escape(_JSON_ESCAPES[char]), 2))
    elif (ord(char) > 0x7F or ord(char) < 0x20) and ord(char) <= 0xFFFF:
        digits = "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{ord(char):04x}")
        options.append((r"\\u" + digits, 6))
    options.extend((re.escape(entity), len(entity)) for entity in _HTML_ENTITIES.get(char, ()))
    return options


def _char_regex(char: str) -> str:
    options = _char_options(char)
    return options[0][0] if len(options) == 1 else "(?:" + "|".join(regex for regex, _ in options) + ")"


def _form_width(form: str) -> int:
    """The longest text the regex of `form` can match."""
    return sum(max(width for _, width in _char_options(char)) for char in form)


def _form_regex(form: str) -> str:
    return "".join(_char_regex(char) for char in form)


def _base64_forms(raw: bytes) -> set[str]:
    """The base64 text of `raw` on its own, and the part of it that shows wherever `raw` sits in a bigger blob.

    Encoding `k` filler bytes + raw (k = 0, 1, 2) covers the three alignments; the characters that carry
    filler bits (the first ceil(8k/6)) or the unknown bytes after (past floor(8(k+n)/6)) are dropped.
    """
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode()
        forms.add(whole)
        forms.add(whole.rstrip("="))
        for k in range(3):
            encoded = encode(b"\0" * k + raw).decode()
            start, end = -(-8 * k // 6), 8 * (k + len(raw)) // 6
            forms.add(encoded[start:end])
    return forms


def secret_forms(secret: str) -> set[str]:
    """The literal forms of a secret (raw and base64); escapes are matched by the regex of each form."""
    forms = {secret} | _base64_forms(secret.encode())
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


@lru_cache(maxsize=256)
def _compile(secrets: frozenset[str]) -> re.Pattern[str] | None:
    forms: set[str] = set()
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LENGTH:
            forms |= secret_forms(secret)
    if not forms:
        return None
    return re.compile("|".join(_form_regex(form) for form in sorted(forms, key=lambda f: (-len(f), f))))


def _derived(value: str) -> list[str]:
    """What a credential-bearing value contains: `Bearer X` -> X; `Basic B64` -> B64, `user:pass`, `pass`."""
    match = _AUTH_SCHEME.match(value)
    if not match:
        return []
    scheme, credential = match.groups()
    found = [credential]
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credential + "=" * (-len(credential) % 4), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return found
        if ":" in decoded:
            found.append(decoded)
            password = decoded.split(":", 1)[1]
            if len(password) >= MIN_SECRET_LENGTH:
                found.append(password)
    return found


def connection_secrets(connection: ResolvedConnection) -> list[str]:
    config = connection.config
    found = secret_values(connection.type, config)
    if connection.type == "http":
        for key in ("headers", "params", "data"):
            values = config.get(key)
            if isinstance(values, Mapping):
                for value in values.values():  # every value is secret (SPEC §12), whatever its name
                    if isinstance(value, str):
                        found.extend(_derived(value))
    elif connection.type == "http_api_key":
        api_key = config.get("api_key")
        prefix = config.get("prefix")
        prefix = "Bearer " if prefix is None else prefix  # the default http_merge applies
        if api_key and prefix:
            found.append(f"{prefix}{api_key}")
        if isinstance(api_key, str) and api_key:
            found.extend(_derived(f"{prefix or ''}{api_key}"))
    return list(dict.fromkeys(found))


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

    def stream(self) -> StreamMasker:
        """A masker for text that arrives in pieces (LLM deltas): a secret split across pieces is still caught."""
        return StreamMasker(self)

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


class StreamMasker:
    """Masks a text that arrives in chunks: `feed(chunk)` answers what is safe to show now (masked, maybe
    empty), `flush()` the masked rest at the end. Joined, the answers equal `mask_text` of the whole text.

    The tail that could still be the beginning of a secret form is held back until the next chunk decides
    it; text that cannot start a form goes out at once, so ordinary deltas keep their granularity.
    """

    __slots__ = ("_masker", "_buffer", "_window", "_starts")

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._buffer = ""
        self._window, self._starts = _stream_tables(masker.secrets)

    def feed(self, chunk: str) -> str:
        pattern = self._masker._pattern
        if pattern is None:
            return chunk
        buffer = self._buffer + chunk
        # Starts before `decided` have every character a form could span: the regex's choice there is final.
        decided = max(0, len(buffer) - self._window)
        hold = next((p for p in range(decided, len(buffer)) if self._could_start(buffer, p)), len(buffer))
        pieces: list[str] = []
        cut = 0
        for match in pattern.finditer(buffer):
            if match.start() >= hold:
                break
            pieces.append(buffer[cut:match.start()])
            pieces.append(MASK)
            cut = match.end()
        if cut < hold:
            pieces.append(buffer[cut:hold])
            cut = hold
        self._buffer = buffer[cut:]
        return "".join(pieces)

    def flush(self) -> str:
        rest, self._buffer = self._buffer, ""
        return self._masker.mask_text(rest)

    def _could_start(self, buffer: str, start: int) -> bool:
        """Could a secret form begin at `start` (matched whole, or cut off by the end of the buffer)?"""
        forms = self._starts.get(buffer[start].lower()[:1])
        if not forms:
            return False
        text = buffer[start:start + self._window + 1].lower()
        end = len(text)
        for options in forms:
            stack = [(0, 0)]
            while stack:
                pos, index = stack.pop()
                if pos == end or index == len(options):
                    return True
                for option in options[index]:
                    stop = pos + len(option)
                    if stop <= end:
                        if text[pos:stop] == option:
                            stack.append((stop, index + 1))
                    elif option.startswith(text[pos:]):
                        return True
        return False


@lru_cache(maxsize=256)
def _stream_tables(secrets: frozenset[str]) -> tuple[int, dict[str, list[tuple[tuple[str, ...], ...]]]]:
    """(the widest text a form can span, {first character: [form as per-character options]}), all lowercase."""
    window = 0
    starts: dict[str, list[tuple[tuple[str, ...], ...]]] = {}
    for secret in secrets:
        if len(secret) < MIN_SECRET_LENGTH:
            continue
        for form in secret_forms(secret):
            window = max(window, _form_width(form))
            options = tuple(_char_literals(char) for char in form)
            for first in {option[0] for option in options[0]}:
                starts.setdefault(first, []).append(options)
    return window, starts


def _char_literals(char: str) -> tuple[str, ...]:
    """The ways one character may be written, as lowercase text (hex case folded; a superset is harmless)."""
    if char in _UNRESERVED:
        return (char.lower(),)
    utf8 = char.encode("utf-8", "surrogatepass")
    options = [char.lower(), "".join(f"%{b:02x}" for b in utf8)]
    if char == " ":
        options.append("+")
    if char in _JSON_ESCAPES:
        options.append(_JSON_ESCAPES[char])
    elif (ord(char) > 0x7F or ord(char) < 0x20) and ord(char) <= 0xFFFF:
        options.append(f"\\u{ord(char):04x}")
    options.extend(_HTML_ENTITIES.get(char, ()))
    return tuple(dict.fromkeys(options))
