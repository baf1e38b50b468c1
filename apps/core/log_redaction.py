"""A logging filter that takes token-like query values out of log records (SPEC §12: no log line
carries a token).

Request lines (`django.server` under runserver, gunicorn's access log, `django.request`) print the path
with its query string, and the platform hands out URLs with credentials in them: the hosted connect
page (`/connect?token=...`), the OAuth2 callback (`?code=...&state=...`). The filter formats the record,
replaces each such value with `[redacted]` and keeps the formatted text, so it works whatever the
message's arguments are.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
# Query parameter names whose values are credentials or single-use grants: any `*token`, OAuth2
# `code` and `state`, and the usual secret names. Matched after `?`, `&` or `;`, case-insensitively,
# in raw and %-encoded forms of the separator (`%3F`, `%26`: a URL inside a logged `next=` parameter).
_SECRET_QUERY_VALUE = re.compile(
    r"(?P<lead>(?:[?&;]|%3[Ff]|%26)(?:[A-Za-z0-9_.-]*token|code|state|api_?key|key|secret|password|sig|signature)"
    r"(?:=|%3[Dd]))(?P<value>[^&;\s\"'#]*)",
    re.IGNORECASE,
)


def redact_query_secrets(text: str) -> str:
    if "=" not in text and "%3" not in text:  # no `name=value`, raw or %-encoded: nothing to redact (most lines)
        return text
    return _SECRET_QUERY_VALUE.sub(lambda m: m["lead"] + (REDACTED if m["value"] else ""), text)


class RedactQuerySecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's own error path
            return True
        redacted = redact_query_secrets(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
