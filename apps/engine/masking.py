"""Secret masking: every secret the engine resolved for a run is replaced by `********` wherever it shows.

Besides the raw value, the forms an upstream or a template is likely to echo are masked too:
- base64, standard and URL-safe alphabets: the whole encoding (with and without padding) and the secret
  embedded at any of the three byte alignments inside a larger blob (`base64("Authorization: Bearer X")`);
- escapes, character by character and in any mix: percent-encoding with either hex case (`%2f`, `%2F`,
  `+` for a space), JSON string escapes (`\\/`, `\\"`, `\\\\`, `\\u00e9`) and HTML entities (`&amp;`);
- of the raw secret only: any case change (upper, lower, mixed), and `\\uXXXX` / `&#NN;` / `&#xHH;` of
  ANY character, ASCII included (`\\u0073\\u006b`, `&#115;&#x6b;`), mixed with plain characters;
- hex of the UTF-8 bytes (either case) and base32 (with and without padding, either case, and the secret
  at any of the five byte alignments inside a larger blob).
Every form becomes one regex fragment; all fragments of a secret set are compiled once into one alternation,
longest first, so a longer form is never left half-masked by a shorter one. What is still not masked (a
template can compute it) is listed in docs/decisions.md.

`connection_secrets` also derives what a credential-bearing value contains: the credential after an auth
scheme word (`Bearer X`, `Token X`, `Basic B64` -> `X`, `B64`) and, for Basic, the decoded `user:pass` and
the password alone.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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


def _json_u(char: str) -> str:
    """`\\u0073`, or the UTF-16 surrogate pair JSON uses beyond the BMP."""
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


@lru_cache(maxsize=4096)
def _char_escapes(char: str, everything: bool) -> tuple[str, ...]:
    """The escaped ways (not the character itself) one character may be written, in lowercase; an escape's
    letters match in any case (`%2F`, `\\u00E9`, `&#X73;`, `&AMP;`: decoders accept them all)."""
    options: list[str] = []
    if char not in _UNRESERVED:
        options.append("".join(f"%{b:02x}" for b in char.encode("utf-8", "surrogatepass")))
    if char == " ":
        options.append("+")
    if char in _JSON_ESCAPES:
        options.append(_JSON_ESCAPES[char])
    if everything or (char not in _JSON_ESCAPES and (ord(char) > 0x7F or ord(char) < 0x20)):
        options.append(_json_u(char))
    options.extend(_HTML_ENTITIES.get(char, ()))
    if everything:
        options.extend((f"&#{ord(char)};", f"&#x{ord(char):x};"))
    return tuple(dict.fromkeys(option.lower() for option in options))


def _variants(char: str, fold: bool) -> tuple[str, ...]:
    if not fold:
        return (char,)
    return tuple(dict.fromkeys(v for v in (char, char.lower(), char.upper()) if len(v) == 1))


@dataclass(frozen=True)
class Form:
    """One literal form of a secret. `fold`: matched in any letter case; `escapes`: every character may also
    show as `\\uXXXX` or a numeric HTML entity (only the raw secret: escaping every character of a base64
    text is not something an encoder does, and it would cost the hot path for nothing)."""

    text: str
    fold: bool = False
    escapes: bool = False


def _char_options(char: str, form: Form) -> tuple[str, ...]:
    """(lowercase) texts one character of `form` may be written as: the character (each case variant when the
    form folds case) and every escape of it. Lowercase is a superset for the stream's look-ahead."""
    return _char_options_of(char, form.fold, form.escapes)


@lru_cache(maxsize=4096)
def _char_options_of(char: str, fold: bool, escapes: bool) -> tuple[str, ...]:
    options = [variant.lower() for variant in _variants(char, fold)]
    options.extend(_char_escapes(char, escapes))
    return tuple(dict.fromkeys(options))


_REGEX_SPECIAL = frozenset("\\.^$*+?{}[]|()")


def _esc(text: str) -> str:
    """re.escape, minus the escaping of harmless characters (`&`, `#`, `%`, `-`...): shorter patterns compile
    faster, and compiling is paid once per secret set."""
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)


def _any_case(text: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isascii() and c.isalpha() else _esc(c) for c in text)


def _char_leads(char: str, form: Form) -> dict[str, list[str]]:
    """{first character: [the rest, lowercase text]} for the ways one character may be written. Every escape
    starts with a non-letter (`%`, `\\`, `&`, `+`), so the first character is always matched literally."""
    leads: dict[str, list[str]] = {variant: [""] for variant in _variants(char, form.fold)}
    # Escapes of the character as written (a case change and an escape at once is not matched: residual risk).
    for escape in _char_escapes(char, form.escapes):
        leads.setdefault(escape[0], []).append(escape[1:])
    for tails in leads.values():
        tails.sort(key=lambda tail: tail == "")  # the character alone last: `&amp;` before `&`
    return leads


def _tails_regex(tails: list[str], folded: bool) -> str:
    """Alternatives for the rest of an escape. Inside a `(?ai:...)` group (folded) plain text matches in any
    ASCII case; outside, each letter gets its class (escapes decode the same in either case)."""
    unique = [tail if folded else _any_case(tail) for tail in dict.fromkeys(tails)]
    unique = [_esc(tail) for tail in unique] if folded else unique
    return unique[0] if len(unique) == 1 else "(?:" + "|".join(unique) + ")"


def _char_regex(char: str, form: Form) -> str:
    """One character of `form`, for use inside the form's context (`(?ai:...)` when the form folds case)."""
    return _char_regex_of(char, form.fold, form.escapes)


@lru_cache(maxsize=4096)
def _char_regex_of(char: str, fold: bool, escapes: bool) -> str:
    # Cached: encoded forms repeat the few characters of their alphabet, and building is pure Python.
    form = Form(char, fold, escapes)
    leads = _char_leads(char, form)
    if form.fold and char.isascii():
        leads = {lead.lower() if lead.isalpha() else lead: tails for lead, tails in leads.items()}  # the flag folds
    plain = [lead for lead, tails in leads.items() if tails == [""]]
    if len(plain) == len(leads):
        return _esc(plain[0]) if len(plain) == 1 else "[" + "".join(re.escape(c) for c in plain) + "]"
    return "(?:" + "|".join(_esc(lead) + _tails_regex(tails, form.fold) for lead, tails in leads.items()) + ")"


def _form_width(form: Form) -> int:
    """The longest text the regex of `form` can match."""
    return sum(max(len(option) for option in _char_options(char, form)) for char in form.text)


def _form_alternatives(form: Form) -> dict[str, str]:
    """{literal first character: regex of the rest} for every way `form` may begin."""
    rest = "".join(_char_regex(char, form) for char in form.text[1:])
    alternatives = {}
    for lead, tails in _char_leads(form.text[0], form).items():
        tail = "" if tails == [""] else _tails_regex(tails, form.fold)
        body = tail + rest
        # ASCII-only case folding (`(?ai:`): Unicode folding would also match e.g. the Kelvin sign for `k`.
        alternatives[lead] = f"(?ai:{body})" if form.fold and body else body
    return alternatives


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


def _base32_forms(raw: bytes) -> set[str]:
    """Like `_base64_forms`, with 5-bit characters: five byte alignments (k filler bytes, k = 0..4)."""
    whole = base64.b32encode(raw).decode()
    forms = {whole, whole.rstrip("=")}
    for k in range(5):
        encoded = base64.b32encode(b"\0" * k + raw).decode()
        start, end = -(-8 * k // 5), 8 * (k + len(raw)) // 5
        forms.add(encoded[start:end])
    return forms


def secret_form_specs(secret: str, *, escapes: bool = True) -> set[Form]:
    """Every form of a secret: raw (any case, any escape), base64 (exact), hex and base32 (any case).
    `escapes=False` leaves out the `\\u`/`&#` escapes of every character (see `_needs_escapes`)."""
    raw = secret.encode("utf-8", "surrogatepass")
    forms = {Form(secret, fold=True, escapes=escapes)}
    forms |= {Form(text) for text in _base64_forms(raw)}
    forms |= {Form(text, fold=True) for text in (raw.hex(), *_base32_forms(raw))}
    return {form for form in forms if len(form.text) >= MIN_SECRET_LENGTH}


def secret_forms(secret: str) -> set[str]:
    """The literal forms of a secret; escapes and case variants are matched by the regex of each form."""
    return {form.text for form in secret_form_specs(secret)}


def _needs_escapes(text: str) -> bool:
    """Could a `\\u`/`&#` escape of an ASCII character (a form only the full pattern has) occur in `text`?
    If not, the lean pattern finds exactly what the full one would: the options it lacks need these."""
    return "&#" in text or "\\u" in text or "\\U" in text


@lru_cache(maxsize=256)
def _compile(secrets: frozenset[str], escapes: bool = True) -> re.Pattern[str] | None:
    """One pattern for a secret set. Built twice, lazily: lean (escapes=False, what almost every text needs)
    and full (compiled only once a text holds `\\u` or `&#`; several times bigger, so slower to compile)."""
    forms: set[Form] = set()
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LENGTH:
            forms |= secret_form_specs(secret, escapes=escapes)
    if not forms:
        return None
    ordered = sorted(forms, key=lambda f: (-len(f.text), f.text, f.fold, f.escapes))
    # Grouped by the literal first character of every way a form may begin: each top-level alternative then
    # starts with a literal, so the regex engine skips every position no form can start at (a charset
    # prefix scan) instead of trying every form at every position. Within a group, longest form first.
    groups: dict[str, list[str]] = {}
    for form in ordered:
        for lead, rest in _form_alternatives(form).items():
            groups.setdefault(lead, []).append(rest)
    return re.compile("|".join(
        _esc(lead) + (rests[0] if len(rests) == 1 else "(?:" + "|".join(rests) + ")")
        for lead, rests in ((lead, list(dict.fromkeys(r))) for lead, r in groups.items())
    ))


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
        self._pattern = _compile(self.secrets, False)  # the lean pattern; None when there is nothing to mask

    def _full(self) -> re.Pattern[str]:
        return _compile(self.secrets, True)

    def _sub(self, replacement: str, text: str) -> str:
        pattern = self._full() if _needs_escapes(text) else self._pattern
        return pattern.sub(replacement, text)

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
        return self._sub(MASK, text)

    def mask(self, obj: Any) -> Any:
        """Walk str/dict/list/tuple; keys are masked too (a secret should never be a key, but cheap)."""
        if self._pattern is None:
            return obj
        return self._walk(obj, self._sub)

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
        if self._masker._pattern is None:
            return chunk
        buffer = self._buffer + chunk
        # Lean or full by the same rule as mask_text: a start decided here has its whole window in `buffer`,
        # so an escape that could change the choice there is in `buffer` too.
        pattern = self._masker._full() if _needs_escapes(buffer) else self._masker._pattern
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
        for form in secret_form_specs(secret):
            window = max(window, _form_width(form))
            options = tuple(_char_options(char, form) for char in form.text)
            for first in {option[0] for option in options[0]}:
                starts.setdefault(first, []).append(options)
    return window, starts

