"""gunicorn settings read from the working directory (`gunicorn config.wsgi`).

Only what the platform needs beyond gunicorn's defaults:
- threaded workers (gthread, 8 threads each; the worker count stays gunicorn's: `-w`/WEB_CONCURRENCY). A
  streamed run (SSE) holds the thread that writes it for the whole run: with sync workers 2 open streams
  stop a 2-worker server from answering anything else. Measured by bench/serving.sh
  (docs/decisions.md "Performance and serving"). Command-line options still win (`-k sync --threads 1`).
- the access log is on (stdout), and its lines never carry a token (SPEC §12). gunicorn's access log is not
  Django logging, so the LOGGING filter does not reach it; this logger class redacts the same token-like
  query values in every atom (request line, query string, Referer) and never prints an Authorization or
  Cookie header, whatever `access_log_format` asks for.
- in production (LOG_FORMAT=json, the default unless DEBUG) gunicorn's own lines are JSON like the
  application's (SPEC §15), through the same formatter: an access line has the usual combined-format text
  as `message` plus `method`, `path`, `status`, `bytes`, `duration_ms`, `remote_addr`, `user_agent`,
  `referer` and the response's `request_id`; error-log lines carry the log context of the request they
  belong to.
"""

import os
import shutil
import tempfile
from pathlib import Path

import environ
from gunicorn.glogging import Logger

from apps.core.log_context import AddLogContext
from apps.core.log_formats import JsonFormatter, log_format
from apps.core.log_redaction import REDACTED, redact_query_secrets

# The same .env the settings read (read here first: the master decides the format before a worker loads Django).
environ.Env.read_env(Path(__file__).resolve().parent / ".env", overwrite=False)
JSON_LOGS = log_format(environ.Env()) == "json"

_NEVER_LOGGED = ("{authorization}i", "{cookie}i", "{set-cookie}o", "{http_authorization}e", "{http_cookie}e")


class RedactingLogger(Logger):
    def setup(self, cfg):
        super().setup(cfg)
        if JSON_LOGS:
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(JsonFormatter())
                    handler.addFilter(AddLogContext())

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

    def access(self, resp, req, environ, request_time):
        if not JSON_LOGS:
            return super().access(resp, req, environ, request_time)
        if not self.access_log_enabled:
            return None
        atoms = self.atoms(resp, req, environ, request_time)
        fields = {
            "method": atoms["m"],
            "path": atoms["U"] + (f"?{atoms['q']}" if atoms["q"] else ""),
            "status": int(atoms["s"]) if str(atoms["s"]).isdigit() else atoms["s"],
            "bytes": atoms["B"],
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "remote_addr": atoms["h"],
            "user_agent": atoms["a"],
            "referer": atoms["f"],
        }
        request_id = atoms.get("{x-request-id}o")
        if request_id:
            fields["request_id"] = request_id
        try:
            self.access_log.info("%s", self.cfg.access_log_format % self.atoms_wrapper_class(atoms), extra=fields)
        except Exception:
            self.exception("access log line failed")
        return None


logger_class = RedactingLogger
accesslog = "-"

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
