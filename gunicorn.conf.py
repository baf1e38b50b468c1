"""gunicorn settings read from the working directory (`gunicorn config.wsgi`).

Only what the platform needs beyond gunicorn's defaults:
- threaded workers (gthread, 8 threads each; the worker count stays gunicorn's: `-w`/WEB_CONCURRENCY). A
  streamed run (SSE) holds the thread that writes it for the whole run: with sync workers 2 open streams
  stop a 2-worker server from answering anything else. Measured by bench/serving.sh
  (docs/decisions.md "Performance and serving"). Command-line options still win (`-k sync --threads 1`).
- access-log lines never carry a token (SPEC §12).
gunicorn's access log is not Django logging, so the LOGGING filter does not reach it; this logger class
redacts the same token-like query values in every atom (request line, query string, Referer) and never
prints an Authorization or Cookie header, whatever `access_log_format` asks for.
"""

import os
import shutil
import tempfile
from pathlib import Path

from gunicorn.glogging import Logger

from apps.core.log_redaction import REDACTED, redact_query_secrets

_NEVER_LOGGED = ("{authorization}i", "{cookie}i", "{set-cookie}o", "{http_authorization}e", "{http_cookie}e")


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name, value in atoms.items():
            if name in _NEVER_LOGGED:
                atoms[name] = REDACTED
            elif name == "q" and isinstance(value, str):  # the bare query string, without its `?`
                atoms[name] = redact_query_secrets("?" + value)[1:]
            elif isinstance(value, str):
                atoms[name] = redact_query_secrets(value)
        return atoms


logger_class = RedactingLogger

# gthread: an open SSE stream holds one thread, not a whole worker process (SPEC §15; bench/serving.sh: with
# sync workers 4 open streams let 1 sync run through in 4 s, gthread x8 kept answering). Workers: gunicorn's
# own WEB_CONCURRENCY variable (default 1) or --workers.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))

# Metrics (SPEC §15): prometheus_client's multiprocess mode. Each worker writes its samples to files in
# PROMETHEUS_MULTIPROC_DIR and `/metrics` adds up the files of all of them. The master sets the variable at
# start, before it forks a worker (workers import the app, and so prometheus_client, after the fork: do not
# turn on preload_app); without one from the operator it makes its own directory, removed at exit. Emptied at
# master start: samples left by an earlier master are not this one's (Prometheus copes with counters that
# restart at zero).
_own_metrics_dir: list[str] = []


def on_starting(server):
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="rcp-metrics-")
        _own_metrics_dir.append(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    # A dead worker's counters and histograms stay in the sums (they are still counts); this drops its
    # live-only gauges.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    for directory in _own_metrics_dir:
        shutil.rmtree(directory, ignore_errors=True)
