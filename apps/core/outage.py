"""The database is unavailable: answer `503 service_unavailable` with `Retry-After`, log one line per
incident, recover without a restart (SPEC §15).

Recovery needs nothing from us: Django closes a connection that raised at the end of the request
(`close_old_connections`, with CONN_HEALTH_CHECKS) and the next request opens a new one. What this module
adds is the answer and the log. An outage would otherwise be a 500 and a 70-line traceback per request;
here it is one warning line when an incident starts (per process), a reminder at most every
`DATABASE_UNAVAILABLE_LOG_INTERVAL_SECONDS` while it lasts, each carrying how many requests were answered
503, and one info line when a new connection succeeds again (Django's `connection_created` signal), which
ends the incident. Connections that stay open through an outage (SQLite's "database is locked") are
recycled by CONN_MAX_AGE, so an incident ends within that time after the database is back.
Lines name exception types only: database error messages can quote query data.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)

# Django wraps every driver error of its own connections in these (psycopg's and sqlite3's alike);
# errors of the drivers a workflow's SQL node uses directly are not Django's, so they never match.
DATABASE_UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)


def is_database_unavailable(exc: BaseException | None) -> bool:
    return isinstance(exc, DATABASE_UNAVAILABLE_ERRORS)


class DatabaseOutageLog:
    """Per process: is an incident going on, since when, how many requests it answered 503."""

    def __init__(self, *, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self.since: float | None = None  # start of the current incident
        self.answered = 0  # requests answered 503 in the current incident
        self.incidents = 0  # since the process started
        self._last_logged: float | None = None
        self._unlogged = 0  # 503s since the last warning line

    def record(self, exc: BaseException, *, interval: float) -> None:
        with self._lock:
            now = self._clock()
            self.answered += 1
            self._unlogged += 1
            if self.since is None:  # a new incident: always one line
                self.since = now
                self.incidents += 1
            elif self._last_logged is not None and now - self._last_logged < interval:
                return  # the same incident, logged recently: counted for the next line
            self._last_logged = now
            unlogged, self._unlogged = self._unlogged, 0
            duration = now - self.since
        cause = exc.__cause__
        kind = type(exc).__name__ + (f" ({type(cause).__module__}.{type(cause).__name__})" if cause else "")
        logger.warning(
            "database unavailable: %s; answering 503 service_unavailable until it is reachable again "
            "(%d request(s) answered 503 since the last such line, incident %.0f s old)", kind, unlogged, duration,
        )

    def recovered(self) -> None:
        with self._lock:
            if self.since is None:
                return
            duration, answered = self._clock() - self.since, self.answered
            self.since, self.answered, self._unlogged = None, 0, 0
        logger.info("database reachable again after %.1f s; %d request(s) were answered 503", duration, answered)

    def reset(self) -> None:
        with self._lock:
            self.since, self._last_logged = None, None
            self.answered = self._unlogged = self.incidents = 0


database_outage = DatabaseOutageLog()


def on_connection_created(sender, connection, **kwargs) -> None:
    """Django's `connection_created`: a new connection succeeded, so any incident is over."""
    if database_outage.since is not None:  # unlocked read: the common case costs one attribute test
        database_outage.recovered()


def record_database_unavailable(exc: BaseException) -> None:
    database_outage.record(exc, interval=settings.DATABASE_UNAVAILABLE_LOG_INTERVAL_SECONDS)


def retry_after() -> str:
    return str(int(settings.DATABASE_UNAVAILABLE_RETRY_AFTER_SECONDS))
