"""Micro-benchmarks moved out of the test suite (timing assertions fail under load; tests assert behaviour).

Usage: python bench/micro.py [ROUNDS]     (from the repository root; no database, no Django settings)

Prints one table: engine overhead of a one-http-node run over bare httpx, masking time per 10 KB text,
two independent 0.3 s branches end to end (concurrency), and the test suite's canary scanner per 10 KB.
The "target" column is the bound the tests used to assert; "ok" compares against it.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import httpx  # noqa: E402

from apps.engine import Masker, RunContext, RunOptions, execute, make_http_client  # noqa: E402
from tests.engine.conftest import EchoHandler, FakeResolver, _serve, conn, workflow  # noqa: E402


def timed_ms(fn, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) * 1000 / n


def engine_overhead(rounds: int) -> tuple[float, float]:
    client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True})))
    resolver = FakeResolver({"c1": conn("c1", "http_api_key", url="https://api.example.com", api_key="perf-secret-123456")})
    definition = workflow(
        {"id": "call", "type": "http", "connection": {"id": "c1"}, "config": {"url": "/items", "params": {"q": "{{ input.q }}"}}},
        fields={"q": {"type": "string"}}, output={"body": "{{ nodes.call.output.body }}"},
    )

    def once():
        return execute(definition=definition, run_input={"q": "x"}, resolver=resolver, context=RunContext(),
                       options=RunOptions(), http_client=client, on_event=lambda t, d: None)

    assert once().status == "completed"
    baseline = min(timed_ms(lambda: client.get("https://api.example.com/items?q=x"), rounds) for _ in range(3))
    engine = min(timed_ms(once, rounds) for _ in range(3))
    return engine - baseline, baseline


def masking_per_round(rounds: int) -> float:
    secrets = ["sk-test-1234567890abcdef", "tok_live/abc+def=123", "Basic dXNlcjpwYXNzd29yZA==", "p@ss w0rd!", "ghp_" + "x" * 36]
    masker = Masker(secrets)
    text = "".join(random.Random(7).choices("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789/%+=\"\\&", k=10_240))
    masker.mask_text(text)
    return min(timed_ms(lambda: masker.mask_text(text), rounds) for _ in range(3))


def concurrent_branches() -> float:
    with contextlib.contextmanager(_serve)(EchoHandler) as server:
        definition = workflow(
            {"id": "a", "type": "http", "config": {"url": server.base_url + "/slow/a"}},
            {"id": "b", "type": "http", "config": {"url": server.base_url + "/slow/b"}},
            output={"a": "{{ nodes.a.output.body.path }}", "b": "{{ nodes.b.output.body.path }}"},
        )
        with make_http_client(allow_private=True) as client:
            started = time.perf_counter()
            result = execute(definition=definition, run_input={}, resolver=FakeResolver(), context=RunContext(),
                             options=RunOptions(), http_client=client, on_event=lambda t, d: None,
                             allow_private_network=True)
            elapsed = (time.perf_counter() - started) * 1000
    assert result.output == {"a": "/slow/a", "b": "/slow/b"}, result
    return elapsed


def canary_scan_per_10kb(rounds: int) -> float:
    from tests.support.canary import Scanner

    scanner = Scanner()
    for i in range(2000):  # about what a full test session tracks, several times over
        scanner.add(f"canary-secret-{i:04d}-{random.Random(i).getrandbits(64):x}", f"bench {i}")
    text = "".join(random.Random(3).choices("abcdefghijklmnopqrstuvwxyz0123456789 {}\":,", k=10_240))
    return min(timed_ms(lambda: scanner.find(text), rounds) for _ in range(3))


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    overhead, baseline = engine_overhead(rounds)
    rows = [
        ("engine overhead, one http node run (over bare httpx)", overhead, 1.0, f"bare httpx {baseline:.3f} ms"),
        ("masking, 10 KB text, 5 secrets", masking_per_round(rounds), 1.0, ""),
        ("two independent 300 ms branches, end to end", concurrent_branches(), 550.0, "sequential would be >= 600"),
        ("canary scan, 10 KB text, 2000 secrets", canary_scan_per_10kb(rounds), None, "test-suite cost, no target"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'ms':>9}  {'target':>8}  ok   note")
    for name, value, target, note in rows:
        ok = "-" if target is None else ("yes" if value < target else "NO")
        print(f"{name:<{width}}  {value:>9.3f}  {('< ' + format(target, 'g')) if target else '':>8}  {ok:<4} {note}")


if __name__ == "__main__":
    main()
