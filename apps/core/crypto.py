"""Encryption at rest (Fernet) and keyed digests.

Keys come from settings.FERNET_KEYS: the first key encrypts, every key decrypts, so a new key is put
first, `manage.py rotate_fernet_keys` re-encrypts, and the old key is then dropped. A token no key
opens raises `DecryptionError`: the caller never gets ciphertext, an empty value or a guess.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionError(Exception):
    """Stored ciphertext cannot be opened with the configured FERNET_KEYS."""


@functools.lru_cache(maxsize=8)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise DecryptionError("FERNET_KEYS is empty")
    return MultiFernet([Fernet(key.encode() if isinstance(key, str) else key) for key in keys])


def fernet() -> MultiFernet:
    # Keyed on the current setting so tests (and a reload) that change FERNET_KEYS take effect.
    return _multifernet(tuple(settings.FERNET_KEYS))


def encrypt_json(value: Any) -> str:
    payload = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    return fernet().encrypt(payload).decode()


# Opened tokens by (keys, token), per process: the run path decrypts the same few connection configs on every
# run. A Fernet token is immutable and every write of a config makes a new one (fresh IV and timestamp), so
# the stored ciphertext is its own version stamp: an edited config is a miss on the very next read, on every
# worker. The keys are part of the cache key, so a key dropped from FERNET_KEYS opens nothing it opened
# before. Bounded; the plaintext it keeps is what the worker holds while running anyway. Each caller gets
# its own parsed copy.
_OPENED_MAX = 2048
_opened: dict[tuple[tuple[str, ...], str], bytes] = {}


def decrypt_json(token: str) -> Any:
    keys = tuple(settings.FERNET_KEYS)
    payload = _opened.get((keys, token))
    if payload is None:
        try:
            payload = _multifernet(keys).decrypt(token.encode())
        except InvalidToken as exc:
            raise DecryptionError("stored secret cannot be decrypted with the configured FERNET_KEYS") from exc
        if len(_opened) >= _OPENED_MAX:
            _opened.pop(next(iter(_opened), None), None)  # the oldest entry
        _opened[(keys, token)] = payload
    return json.loads(payload)


def rotate_token(token: str) -> str:
    """Re-encrypt a token with the first key. Raises DecryptionError when no key opens it."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("stored secret cannot be decrypted with the configured FERNET_KEYS") from exc


def keyed_fingerprint(value: Any) -> str:
    """A short HMAC of a value: tells two configs apart in history without revealing either.

    Keyed with a key derived from SECRET_KEY so the fingerprint of a short secret cannot be brute-forced
    offline from the history table alone.
    """
    key = hashlib.sha256(b"config-fingerprint:" + settings.SECRET_KEY.encode()).digest()
    payload = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()[:16]
