"""SQLiteCache (apps/core/cache.py), the embedded default cache: Django's cache semantics, and `add`/`incr` atomic
across processes (what rate-limit counters shared by gunicorn's workers need)."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from apps.core import cache as cache_module
from apps.core.cache import SQLiteCache

INCREMENTS = 300
PROCESSES = 4


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "cache.sqlite3")


@pytest.fixture
def cache(path):
    return SQLiteCache(path, {"KEY_PREFIX": "t"})


def test_it_keeps_values_until_they_expire(cache):
    cache.set("n", 41, timeout=60)
    cache.set("obj", {"a": [1, "b"]}, timeout=60)
    cache.set("big", 2**70, timeout=60)
    cache.set("forever", "x", timeout=None)
    assert (cache.get("n"), cache.get("obj"), cache.get("big"), cache.get("forever")) == (41, {"a": [1, "b"]}, 2**70, "x")
    assert cache.incr("n") == 42 and cache.incr("n", 8) == 50 and cache.get("n") == 50
    cache.set("gone", 1, timeout=0)
    assert cache.get("gone", "default") == "default" and not cache.has_key("gone")
    assert cache.has_key("n") and cache.delete("n") and not cache.delete("n")
    cache.clear()
    assert cache.get("obj") is None and cache.get("forever") is None


def test_add_only_adds_what_is_missing_or_expired(cache):
    assert cache.add("k", 1, timeout=60)
    assert not cache.add("k", 2, timeout=60)
    assert cache.get("k") == 1
    cache.set("old", 1, timeout=0.01)
    time.sleep(0.05)
    assert cache.add("old", 2, timeout=60) and cache.get("old") == 2
    cache.set("forever", 1, timeout=None)
    assert not cache.add("forever", 2)


def test_incr_of_a_missing_or_expired_key_is_a_value_error(cache):
    with pytest.raises(ValueError):
        cache.incr("missing")
    cache.set("old", 1, timeout=0.01)
    time.sleep(0.05)
    with pytest.raises(ValueError):
        cache.incr("old")


def test_touch_moves_the_expiry(cache):
    cache.set("k", 1, timeout=0.05)
    assert cache.touch("k", timeout=60)
    time.sleep(0.1)
    assert cache.get("k") == 1
    assert not cache.touch("missing")


def test_versions_and_prefixes_are_separate_keys(cache, path):
    other = SQLiteCache(path, {"KEY_PREFIX": "u"})
    cache.set("k", 1)
    cache.set("k", 2, version=2)
    other.set("k", 3)
    assert (cache.get("k"), cache.get("k", version=2), other.get("k")) == (1, 2, 3)


def test_the_sweep_deletes_expired_rows_then_the_soonest_to_expire_beyond_max_entries(path, monkeypatch):
    monkeypatch.setattr(cache_module, "SWEEP_EVERY", 10)
    cache = SQLiteCache(path, {"OPTIONS": {"MAX_ENTRIES": 6, "CULL_FREQUENCY": 2}})
    for i in range(3):
        cache.set(f"expired-{i}", i, timeout=0)
    cache.set("forever", "kept", timeout=None)
    for i in range(6):  # the 10th write sweeps: 3 expired go, then 7 live > 6: 3 (7 // 2) soonest to expire go
        cache.set(f"live-{i}", i, timeout=100 + i)
    rows = [key for (key,) in cache._db().execute("SELECT key FROM cache ORDER BY key")]
    assert rows == [":1:forever", ":1:live-3", ":1:live-4", ":1:live-5"]


def _increment(path: str, start, count: int) -> None:
    cache = SQLiteCache(path, {})
    start.wait()
    for _ in range(count):
        try:
            cache.incr("counter")
        except ValueError:
            if not cache.add("counter", 1, timeout=60):
                cache.incr("counter")


def _add(path: str, start, results) -> None:
    cache = SQLiteCache(path, {})
    start.wait()
    results.put(cache.add("once", "mine", timeout=60))


@pytest.fixture
def spawn():
    # "spawn": fresh interpreters, so nothing (a connection, a lock) is inherited from this process.
    return multiprocessing.get_context("spawn")


def test_increments_from_several_processes_are_never_lost(path, spawn):
    start = spawn.Barrier(PROCESSES)
    workers = [spawn.Process(target=_increment, args=(path, start, INCREMENTS)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert SQLiteCache(path, {}).get("counter") == PROCESSES * INCREMENTS


def test_add_from_several_processes_succeeds_once(path, spawn):
    start, results = spawn.Barrier(PROCESSES), spawn.Queue()
    workers = [spawn.Process(target=_add, args=(path, start, results)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=120)
    assert sorted(outcomes) == [False] * (PROCESSES - 1) + [True]


def test_a_forked_child_opens_its_own_connection(cache, path):
    cache.set("k", 1)
    parent = cache._db()
    context = multiprocessing.get_context("fork")
    results = context.Queue()

    def child():
        results.put((cache._db() is not parent, cache.incr("k")))

    process = context.Process(target=child)
    process.start()
    assert results.get(timeout=60) == (True, 2)
    process.join(timeout=60)
    assert cache.get("k") == 2
