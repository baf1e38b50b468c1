"""No log line carries a token (SPEC §12): request lines are redacted wherever the platform logs them."""

from __future__ import annotations

import io
import logging
import runpy
from datetime import timedelta
from pathlib import Path

import pytest

from apps.core.log_redaction import RedactQuerySecrets, redact_query_secrets

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJjb25uZWN0In0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"GET /connect?token={TOKEN} HTTP/1.1", "GET /connect?token=[redacted] HTTP/1.1"),
        (f"GET /connect?lang=en&token={TOKEN}&x=1 HTTP/1.1", "GET /connect?lang=en&token=[redacted]&x=1 HTTP/1.1"),
        (f"GET /connect?TOKEN={TOKEN}", "GET /connect?TOKEN=[redacted]"),
        ("GET /connect/oauth2/callback?code=abc123&state=s-456 HTTP/1.1",
         "GET /connect/oauth2/callback?code=[redacted]&state=[redacted] HTTP/1.1"),
        (f"GET /v1/runs/1/stream?stream_token={TOKEN}", "GET /v1/runs/1/stream?stream_token=[redacted]"),
        (f"GET /login?next=/connect%3Ftoken%3D{TOKEN}", "GET /login?next=/connect%3Ftoken%3D[redacted]"),
        ("GET /v1/runs?page=2&user_id=u HTTP/1.1", "GET /v1/runs?page=2&user_id=u HTTP/1.1"),
        ("GET /connect?token= HTTP/1.1", "GET /connect?token= HTTP/1.1"),
    ],
)
def test_token_like_query_values_are_redacted(line, expected):
    assert redact_query_secrets(line) == expected


def _capture(logger_name: str) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    return logger, stream, handler


def test_a_runserver_request_line_is_redacted_by_the_configured_django_server_logger():
    """The record runserver writes (django.core.servers.basehttp.WSGIRequestHandler.log_message)."""
    logger, stream, handler = _capture("django.server")
    try:
        logger.info('"%s" %s %s', f"GET /connect?token={TOKEN} HTTP/1.1", "302", "0",
                    extra={"status_code": 302, "server_time": "01/Dec/2026 12:00:00"})
    finally:
        logger.removeHandler(handler)
    assert TOKEN not in stream.getvalue()
    assert "/connect?token=[redacted]" in stream.getvalue()


def test_the_django_server_handler_and_django_request_logger_carry_the_filter():
    from django.conf import settings

    config = settings.LOGGING
    assert "redact_query_secrets" in config["handlers"]["django.server"]["filters"]
    assert "redact_query_secrets" in config["handlers"]["console"]["filters"]
    assert any(isinstance(f, RedactQuerySecrets) for f in logging.getLogger("django.request").filters)
    assert any(isinstance(f, RedactQuerySecrets) for f in logging.getLogger("django.server").filters)


def test_any_record_through_the_root_handler_is_redacted(caplog):
    record = logging.LogRecord("apps.something", logging.WARNING, __file__, 1, "opened %s", (f"/connect?token={TOKEN}",), None)
    assert RedactQuerySecrets().filter(record) is True
    assert TOKEN not in record.getMessage() and "token=[redacted]" in record.getMessage()


def test_gunicorn_access_lines_are_redacted():
    from gunicorn.config import Config

    conf = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", '%(r)s %(q)s "%(f)s" %({authorization}i)s')
    logger = conf["logger_class"](cfg)

    class Response:
        status, sent, headers = "302 Found", 0, []

    environ = {"REQUEST_METHOD": "GET", "RAW_URI": f"/connect?token={TOKEN}", "SERVER_PROTOCOL": "HTTP/1.1",
               "PATH_INFO": "/connect", "QUERY_STRING": f"token={TOKEN}", "HTTP_REFERER": f"https://x/?token={TOKEN}",
               "REMOTE_ADDR": "127.0.0.1"}
    request_headers = [("AUTHORIZATION", f"Bearer {TOKEN}")]
    atoms = logger.atoms(Response(), request_headers, environ, timedelta(seconds=0))
    line = cfg.access_log_format % atoms
    assert TOKEN not in line
    assert "/connect?token=[redacted]" in line and "token=[redacted]" in atoms["q"]
