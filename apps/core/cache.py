"""`SQLiteCache`: a Django cache in one SQLite file, shared by every process of one machine.

The embedded default of CACHES (no Redis needed), chosen for the rate-limit counters (apps.core.ratelimit),
which must be shared by gunicorn's workers and cost little per request:

- `add()` and `incr()` are one statement each, so they are atomic across processes and threads (SQLite's
  write lock). Django's FileBasedCache is not: its `incr()` is a read then a rewrite (two workers lose
  increments), and each write lists the whole cache directory (measured: 110-400 µs per increment, against
  15 µs here).
- It is not Django's DatabaseCache: a file of its own under var/ with its own connections, never the
  `default` database (a run's SQL statement budget is unchanged, and the database may be PostgreSQL).
- WAL, `synchronous=NORMAL` (no fsync per write; a power cut may lose recent writes, never the file), a busy
  timeout for writers of other processes. One connection per thread, opened again after a fork.
- Expired rows are deleted every `SWEEP_EVERY` writes of a process; beyond MAX_ENTRIES the entries closest
  to expiry go first (CULL_FREQUENCY as Django's: 3 = a third).

Integers are stored as SQLite integers (so `incr` happens in SQL), everything else pickled, as Django's
other backends do: the file must not be writable by anyone the process does not trust.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import threading
import time
from pathlib import Path

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

SWEEP_EVERY = 1000
_INT64 = (-(2**63), 2**63 - 1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires REAL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cache_expires ON cache (expires);
"""
_LIVE = "(expires IS NULL OR expires > ?)"


# Connections per thread and file (Django makes a backend instance per thread; this also keeps them across
# instances, e.g. when tests change CACHES). Forgotten in a forked child: a connection must not cross a fork
# (gunicorn forks its workers after loading the application).
_connections = threading.local()


def _forget_connections() -> None:
    global _connections
    _connections = threading.local()


os.register_at_fork(after_in_child=_forget_connections)


_OPEN_SECONDS = 10


def _connect(path: str) -> sqlite3.Connection:
    """Open and set up the cache file. Switching a file to WAL needs it to itself for a moment, and SQLite
    answers "database is locked" at once, without its busy timeout, when several processes open it for the
    first time together: set-up is retried until _OPEN_SECONDS have passed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + _OPEN_SECONDS
    while True:
        db = sqlite3.connect(path, timeout=_OPEN_SECONDS, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            return db
        except sqlite3.OperationalError as exc:
            db.close()
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _encode(value):
    if type(value) is int and _INT64[0] <= value <= _INT64[1]:
        return value
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def _decode(stored):
    return stored if type(stored) is int else pickle.loads(stored)  # noqa: S301 (our own file, see above)


class SQLiteCache(BaseCache):
    def __init__(self, location: str, params: dict):
        super().__init__(params)
        self._path = str(location)
        self._writes = 0

    def _db(self) -> sqlite3.Connection:
        opened = _connections.__dict__
        db = opened.get(self._path)
        if db is None:
            db = opened[self._path] = _connect(self._path)
        return db

    def _wrote(self) -> None:
        self._writes += 1
        if self._writes % SWEEP_EVERY == 0:
            self._sweep()

    def _sweep(self) -> None:
        db = self._db()
        db.execute("DELETE FROM cache WHERE expires <= ?", (time.time(),))
        (count,) = db.execute("SELECT count(*) FROM cache").fetchone()
        if count > self._max_entries:
            excess = count // self._cull_frequency if self._cull_frequency else count
            db.execute("DELETE FROM cache WHERE key IN (SELECT key FROM cache ORDER BY expires IS NULL, expires LIMIT ?)",
                       (excess,))

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        now = time.time()
        cursor = self._db().execute(
            "INSERT INTO cache (key, value, expires) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
            "SET value = excluded.value, expires = excluded.expires WHERE cache.expires <= ?",
            (key, _encode(value), self.get_backend_timeout(timeout), now),
        )
        self._wrote()
        return cursor.rowcount == 1

    def get(self, key, default=None, version=None):
        key = self.make_and_validate_key(key, version=version)
        row = self._db().execute(f"SELECT value FROM cache WHERE key = ? AND {_LIVE}", (key, time.time())).fetchone()
        return default if row is None else _decode(row[0])

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None) -> None:
        key = self.make_and_validate_key(key, version=version)
        self._db().execute(
            "INSERT INTO cache (key, value, expires) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
            "SET value = excluded.value, expires = excluded.expires",
            (key, _encode(value), self.get_backend_timeout(timeout)),
        )
        self._wrote()

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        cursor = self._db().execute(f"UPDATE cache SET expires = ? WHERE key = ? AND {_LIVE}",
                                    (self.get_backend_timeout(timeout), key, time.time()))
        return cursor.rowcount == 1

    def incr(self, key, delta=1, version=None) -> int:
        """Atomic across processes: one UPDATE. ValueError when the key is missing or expired (as Django's)."""
        key = self.make_and_validate_key(key, version=version)
        row = self._db().execute(
            f"UPDATE cache SET value = value + ? WHERE key = ? AND {_LIVE} AND typeof(value) = 'integer' "
            "RETURNING value",
            (delta, key, time.time()),
        ).fetchone()
        if row is None:
            raise ValueError(f"Key '{key}' not found.")
        return row[0]

    def delete(self, key, version=None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return self._db().execute("DELETE FROM cache WHERE key = ?", (key,)).rowcount == 1

    def has_key(self, key, version=None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return self._db().execute(f"SELECT 1 FROM cache WHERE key = ? AND {_LIVE}", (key, time.time())).fetchone() is not None

    def clear(self) -> None:
        self._db().execute("DELETE FROM cache")

    def close(self, **kwargs) -> None:
        # Django calls this at the end of every request: the connections are kept (opening one costs more
        # than a request's cache work), as Django keeps its persistent database connections.
        pass
