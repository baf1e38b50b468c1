"""Masking cost (moved here from tests/engine/test_masking_forms.py: timing belongs in bench/, not in tests).
Usage: python bench/masking.py [ROUNDS]. Prints the cold compile time of one secret set, mask_text over 10 KB
(mixed text with escape characters, and plain text), and a 10 KB stream in 8-character deltas."""

import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from apps.engine.masking import Masker  # noqa: E402

SECRETS = ["sk-test-1234567890abcdef", "tok_live/abc+def=123", "Basic dXNlcjpwYXNzd29yZA==", "p@ss w0rd!",
           "ghp_" + "x" * 36]


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    started = time.perf_counter()
    masker = Masker(SECRETS)
    compiled = time.perf_counter() - started
    started = time.perf_counter()
    masker.stream()
    tables = time.perf_counter() - started
    rng = random.Random(7)
    mixed = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789/%+=\"\\&", k=10_240))
    plain = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789.,", k=10_240))
    print(f"compile {len(SECRETS)} secrets (cold): {compiled * 1000:.1f} ms; stream tables {tables * 1000:.1f} ms")
    for name, text in (("mixed", mixed), ("plain", plain)):
        masker.mask_text(text)
        started = time.perf_counter()
        for _ in range(rounds):
            masker.mask_text(text)
        print(f"mask_text 10 KB {name}: {(time.perf_counter() - started) / rounds * 1000:.3f} ms/round")
    started = time.perf_counter()
    stream = masker.stream()
    for i in range(0, len(plain), 8):
        stream.feed(plain[i:i + 8])
    stream.flush()
    print(f"stream 10 KB in 8-char deltas: {(time.perf_counter() - started) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
