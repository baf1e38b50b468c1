"""What counts as a credential written inline in a workflow definition (SPEC §12 "No credential in a
definition"). Pure functions over strings, and `scan_config`, which walks a node's config and keys
errors by path (called by `definition.check_definition`).

A string value of a node config is refused when, once its templates (`{{ ... }}`, `{% ... %}`,
`{# ... #}`) are taken out (what a template renders comes from run input, not from the definition):
- it holds a URL with userinfo (`https://user:pass@host/`, `https://token@host/`);
- it holds a URL whose query names a credential (`?api_key=`, `?key=`, `?access_token=`, `?sig=`...,
  the names `connection_types.is_sensitive_key` knows) with a literal value;
- it is `<auth scheme> <credential>` as a whole (`Bearer abcd1234`, `Basic dXNlcjpwYXNz`, `Token ...`);
- it contains a token of a well-known credential shape (`sk-...`, `sk_live_...`, `ghp_...`,
  `github_pat_...`, `xoxb-...`, `glpat-...`, `AKIA...`, `AIza...`, a JWT `eyJ....eyJ...`);
- it contains a long high-entropy token (`looks_random`, thresholds in docs/decisions.md).
Messages name the rule, never the value.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .connection_types import REQUEST_MAPPINGS, is_sensitive_key
from .errors import PathErrors

_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_PLACEHOLDER_ONLY = re.compile(r"\{[A-Za-z0-9_]*\}")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>`]+")
_AUTH_SCHEME = re.compile(
    r"(?i)\s*(bearer|basic|token|bot|digest|apikey|api-key|ssws|oauth)\s+([A-Za-z0-9._~+/=:-]{8,})\s*"
)
KNOWN_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    # `sk-` needs a digit too, so `sk-learn-preprocessing` stays a word.
    ("an sk-... API key", re.compile(r"(?<![A-Za-z0-9])sk-(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{16,}")),
    ("a Stripe key", re.compile(r"(?<![A-Za-z0-9])[sr]k_(?:live|test)_[A-Za-z0-9]{10,}")),
    ("a GitHub token", re.compile(r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")),
    ("a Slack token", re.compile(r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a GitLab token", re.compile(r"(?<![A-Za-z0-9])glpat-[A-Za-z0-9_-]{20,}")),
    ("an AWS access key ID", re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])")),
    ("a Google API key", re.compile(r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}")),
    ("a JWT", re.compile(r"(?<![A-Za-z0-9])eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")),
)

# Long high-entropy tokens (docs/decisions.md, "Workflows"): a run of the base64/base64url/hex alphabet...
MIN_RANDOM_LENGTH = 24
_CANDIDATE = re.compile(r"[A-Za-z0-9+/=_-]{" + str(MIN_RANDOM_LENGTH) + ",}")
# ...with an unbroken letters-and-digits stretch this long (identifiers split into short words by `-`,
# `_`, `/` are not keys: `Mixtral-8x7B-Instruct-v0`)...
MIN_ALNUM_STRETCH = 12
# ...and at least this Shannon entropy per character (mixed case / one case + digits).
MIN_ENTROPY_MIXED_CASE = 3.5
MIN_ENTROPY_SINGLE_CASE = 3.6
# ...unless most of its letters form pronounceable words (CamelCase identifiers, model names).
MAX_WORDY_SHARE = 0.5
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
_VOWELS = frozenset("aeiouyAEIOUY")


def shannon_entropy(text: str) -> float:
    counts = Counter(text)
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in counts.values()) if total else 0.0


def _wordy_share(token: str) -> float:
    """Share of the letters that sit in words of 4+ letters with at least 1 vowel in 4 (English-like)."""
    letters = sum(c.isalpha() for c in token)
    in_words = sum(
        len(word) for word in _WORD.findall(token)
        if len(word) >= 4 and sum(c in _VOWELS for c in word) / len(word) >= 0.25
    )
    return in_words / letters if letters else 0.0


def looks_random(token: str) -> bool:
    """True for a key-like token: long, letters and digits, not hex, high entropy, not made of words."""
    if len(token) < MIN_RANDOM_LENGTH:
        return False
    has_lower, has_upper = any(c.islower() for c in token), any(c.isupper() for c in token)
    if not any(c.isdigit() for c in token) or not (has_lower or has_upper):
        return False
    if re.fullmatch(r"[0-9a-fA-F-]+", token):
        return False  # hex: hashes, UUIDs and IDs look the same as hex keys (a documented miss)
    if max(len(run) for run in re.findall(r"[A-Za-z0-9]+", token)) < MIN_ALNUM_STRETCH:
        return False
    threshold = MIN_ENTROPY_MIXED_CASE if (has_lower and has_upper) else MIN_ENTROPY_SINGLE_CASE
    return shannon_entropy(token) >= threshold and _wordy_share(token) < MAX_WORDY_SHARE


def _untemplated(value: str) -> str:
    # A template becomes `{}`: what it renders is run-time data, and `{}` reads as "a placeholder" below.
    return _TEMPLATE.sub("{}", value)


def _is_placeholder(text: str) -> bool:
    return not text or bool(_PLACEHOLDER_ONLY.fullmatch(text.strip()))


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        if not all(_is_placeholder(piece) for piece in userinfo.split(":")):
            return "a URL with user:password@ carries credentials"
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if is_sensitive_key(name) and not _is_placeholder(value):
            return f"the URL query parameter '{name}' carries credentials"
        if _value_problem(value):
            return f"the URL query parameter '{name}' looks like a credential"
    return None


def _value_problem(text: str) -> str | None:
    match = _AUTH_SCHEME.fullmatch(text)
    if match and _credential_like(match.group(2)):
        return f"a literal '{match.group(1)} ...' credential"
    for label, pattern in KNOWN_SHAPES:
        if pattern.search(text):
            return f"it contains {label}"
    if any(looks_random(token) for token in _CANDIDATE.findall(text)):
        return "it contains a long random-looking token"
    return None


def _credential_like(part: str) -> bool:
    """The part after an auth scheme word: not prose (`Token expired`), not a template."""
    return (
        any(c.isdigit() for c in part)
        or (any(c.islower() for c in part) and any(c.isupper() for c in part))
        or any(c in "+/=_-.~" for c in part)
    )


def credential_problem(value: str) -> str | None:
    """Why this string value of a definition holds a credential, or None. Never quotes the value."""
    text = _untemplated(value)
    urls = _URL.findall(text)
    if not urls and "?" in text and not any(c.isspace() for c in text.strip()):
        urls = [text.strip()]  # a relative URL (`/invoices?api_key=...`, `?access_token=...`)
    for url in urls:
        problem = _url_problem(url)
        if problem:
            return problem
    return _value_problem(text)


def url_placeholders(url: str) -> set[str]:
    """`{name}` placeholders of a URL (those http_merge fills from `parameters`)."""
    return set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", _untemplated(url)))


# Keys of node config (outside headers/params/data) that can only hold a credential. Narrower than
# the header rule so that ordinary keys such as `max_tokens` stay valid.
SECRET_CONFIG_KEY = re.compile(
    r"^(api[-_]?key|apikey|password|passwd|secret|client[-_]?secret|access[-_]?token|refresh[-_]?token|"
    r"token|authorization|bearer|private[-_]?key|cookie)$",
    re.IGNORECASE,
)


def scan_config(config: Any, path: str, errors: PathErrors) -> None:
    """Every credential written inline in a node config (keys and values), keyed by path."""
    if isinstance(config, Mapping):
        for key, value in config.items():
            sub = f"{path}.{key}"
            if key in REQUEST_MAPPINGS and isinstance(value, Mapping):
                # Headers/params/data: the broader rule. One message per offending key (the narrower
                # config rule below would otherwise report `Authorization` a second time).
                for inner_key, inner_value in value.items():
                    if is_sensitive_key(inner_key):
                        errors.add(
                            f"{sub}.{inner_key}",
                            f"'{inner_key}' carries credentials; store it in a Connection and reference it.",
                        )
                    else:
                        scan_config(inner_value, f"{sub}.{inner_key}", errors)
            elif SECRET_CONFIG_KEY.match(str(key)):
                errors.add(sub, f"'{key}' looks like a credential; store it in a Connection and reference it.")
            else:
                scan_config(value, sub, errors)
    elif isinstance(config, list):
        for index, item in enumerate(config):
            scan_config(item, f"{path}.{index}", errors)
    elif isinstance(config, str):
        # Values too (SPEC §12): `?api_key=...`, `user:pass@`, `Bearer ...`, `sk-...`, random-looking tokens.
        problem = credential_problem(config)
        if problem:
            errors.add(path, f"This value looks like a credential ({problem}); store it in a Connection and reference it.")


def scan_secret_parameters(config: Mapping, path: str, errors: PathErrors) -> None:
    """`{api_key}` in an http node's URL filled from `parameters` (node config or the inputs layer)."""
    layers = [(config, f"{path}.config")]
    if isinstance(config.get("inputs"), Mapping):
        layers.append((config["inputs"], f"{path}.config.inputs"))
    names: set[str] = set()
    for layer, _ in layers:
        if isinstance(layer.get("url"), str):
            names |= url_placeholders(layer["url"])
    for name in sorted(n for n in names if is_sensitive_key(n)):
        for layer, where in layers:
            parameters = layer.get("parameters")
            sub = f"{where}.parameters.{name}"
            if isinstance(parameters, Mapping) and name in parameters and sub not in errors:
                errors.add(
                    sub,
                    f"'{name}' fills the URL placeholder {{{name}}} with a credential; store it in a Connection "
                    "and reference it.",
                )
