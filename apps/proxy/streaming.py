"""The proxied answer's body, masked as it streams: bytes in, bytes out, nothing buffered beyond a window.

The engine's StreamMasker (apps.engine.masking) masks text that arrives in pieces: it holds back only the
tail that could still be the start of a secret form (at most the widest form's length), so a secret split
across two upstream chunks is still caught. Bodies are bytes, not always UTF-8: they are decoded with an
incremental UTF-8 decoder and `surrogateescape` (a multi-byte character split across chunks waits for its
other half; a byte that is not UTF-8 becomes a lone surrogate and is written back as the same byte), so
every body round-trips exactly where nothing is masked, binary included.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator

from apps.engine.masking import Masker

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


class BodyMasker:
    """`feed(bytes) -> bytes` safe to send now; `flush() -> bytes` at the end. Joined, the answers are the
    whole body with every secret form masked (as `Masker.mask_text` would on the decoded whole)."""

    def __init__(self, masker: Masker) -> None:
        self._active = bool(masker)
        self._text = masker.stream()
        self._decoder = codecs.getincrementaldecoder(_ENCODING)(errors=_ERRORS)

    def feed(self, chunk: bytes) -> bytes:
        if not self._active:
            return chunk
        return self._text.feed(self._decoder.decode(chunk)).encode(_ENCODING, _ERRORS)

    def flush(self) -> bytes:
        if not self._active:
            return b""
        return self._text.feed(self._decoder.decode(b"", final=True)).encode(_ENCODING, _ERRORS) + \
            self._text.flush().encode(_ENCODING, _ERRORS)


def masked_chunks(chunks: Iterator[bytes], masker: Masker) -> Iterator[bytes]:
    """Every non-empty masked piece of `chunks`, then the flushed rest."""
    body = BodyMasker(masker)
    for chunk in chunks:
        out = body.feed(chunk)
        if out:
            yield out
    rest = body.flush()
    if rest:
        yield rest
