"""Session-wide canary scan: a pytest plugin (loaded from tests/conftest.py).

Every plaintext secret the session stores (through EncryptedJSONField) is recorded with its origin.
Everything the session produces — responses (body, headers, cookies, streamed chunks), log records,
stored run events/runs/versions/callback bodies/audit rows, Celery worker logs — is scanned for every
recorded secret in raw, upper/lower case, URL-encoded, hex and base64 (std/urlsafe, padded or not, at
any byte alignment) forms. A hit fails the test it happened in (or the session, outside a test) with
the secret's origin and where it appeared.

Deliberately independent of apps.engine.masking: the forms are computed here, so a masking bug cannot
hide itself from the scan.

Exemptions (each by design, each narrow):
- App.callback_signing_secret: shown once when the App is created (SPEC), so it is not tracked.
- Responses under /o/: the test-only OAuth2 provider (tests/oauth_provider) legitimately answers
  tokens that the platform then stores; its loggers (oauth2_provider, oauthlib) likewise.
- /v1/schema and /v1/docs: generated from code alone; the schema fuzzer stores strings it drew from
  the schema (a client secret such as a component name), which the document then "contains".
- 200 answers of /internal/v1/credentials/resolve: the internal credentials API exists to hand the
  plaintext config to the system caller.
- The `secret` field of the answers to POST /v1/webhooks and POST /v1/webhooks/{id}/rotate_secret: a webhook's
  signing secret (tracked like every encrypted value) is shown there once by design; the rest of those answers
  is scanned.
- Access keys, connect tokens and OAuth states are stored as digests: nothing to track.
- Values shorter than 8 characters, or made of fewer than 4 distinct characters (fuzzers' "0000…"),
  are too generic to scan for; so are lowercase snake_case words (`page_size`): names the schema fuzzer
  draws from the API document, which every answer spells as its own keys.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import ahocorasick
import pytest

MIN_LENGTH = 8
MIN_DISTINCT = 4  # fewer distinct characters than this is a filler, not a secret
# A lowercase snake_case word (`page_size`, `project_id`, `apps_rollback`) is a name the schema fuzzer drew from
# the API document and stored as a "secret"; every answer spells such names as its own keys, so scanning for
# them finds the answer's structure, not a leak (which names it draws changes with every schema edit).
SCHEMA_WORD = re.compile(r"[a-z]+(?:_[a-z]+)+")

# Loggers of the test-only OAuth provider (exempt, see module docstring).
EXEMPT_LOGGERS = ("oauth2_provider", "oauthlib")
# /o/: the test-only OAuth provider. /v1/schema and /v1/docs: documents generated from code, never from
# stored data, while the schema fuzzer stores strings it takes from them (a client secret "List…ns").
EXEMPT_PATH_PREFIXES = ("/o/", "/v1/schema", "/v1/docs")
RESOLVE_PATH = "/internal/v1/credentials/resolve"
# Management answers that show a webhook's signing secret once: create, rotate (the `secret` field only).
WEBHOOK_SECRET_PATH = re.compile(r"/v1/webhooks(/[0-9a-f-]{36}/rotate_secret)?")

# Keys of an http connection's mappings that hold credential material. Kept here (not imported from the
# product's SENSITIVE_KEY_RE) so the scan does not share the product's blind spots.
_SENSITIVE_WORDS = ("auth", "token", "key", "secret", "passw", "cookie", "credential", "signature", "sig",
                    "session", "team", "appid", "subscription")


def _b64_cores(raw: bytes) -> dict[str, str]:
    """Base64 of `raw` at each byte alignment, trimmed to the characters that depend on `raw` only.

    A secret inside a longer base64 blob (`Basic base64(user:secret)`) is found whatever precedes it.
    """
    forms = {}
    for offset, drop in ((0, 0), (1, 2), (2, 3)):
        data = b"\0" * offset + raw
        full = 4 * (len(data) // 3)
        for name, encoder in (("std", base64.b64encode), ("urlsafe", base64.urlsafe_b64encode)):
            core = encoder(data).decode()[:full][drop:]
            forms[f"base64-{name}-core@{offset}"] = core
    return forms


def forms_of(secret: str) -> dict[str, str]:
    """Every encoded form of a secret the scan looks for (name -> text). Matching is case-insensitive."""
    raw = secret.encode()
    std = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode()
    forms = {
        "raw": secret,
        "upper": secret.upper(),
        "lower": secret.lower(),
        "url-encoded": quote(secret, safe=""),
        "hex-lower": binascii.hexlify(raw).decode(),
        "hex-upper": binascii.hexlify(raw).decode().upper(),
        "base64-std": std,
        "base64-std-unpadded": std.rstrip("="),
        "base64-urlsafe": url,
        "base64-urlsafe-unpadded": url.rstrip("="),
        "json-escaped": json.dumps(secret)[1:-1],
        **_b64_cores(raw),
    }
    return forms


@dataclass
class Hit:
    origin: str
    form: str
    where: str
    test: str

    preview: str = ""

    def __str__(self) -> str:
        return f"secret {self.preview} of {self.origin} found as {self.form} in {self.where}"


@dataclass
class Scanner:
    """Tracks secrets and finds any of their forms in a text, in one pass.

    All forms (lower-cased: matching is case-insensitive, which also covers the upper/lower forms) go into
    one Aho-Corasick automaton (pyahocorasick, C speed), rebuilt lazily when secrets were added since the
    last scan; a rebuild makes a new automaton, so a scan running in another thread keeps its own.
    """

    secrets: dict[str, str] = field(default_factory=dict)  # value -> origin
    patterns: dict[str, tuple[str, str]] = field(default_factory=dict)  # lower-cased form -> (value, form name)
    forms_total: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"responses": 0, "chunks": 0, "log records": 0,
                                                          "rows": 0, "worker logs": 0, "texts": 0, "bytes": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)
    _automaton: Any = None
    _dirty: bool = False

    def add(self, value: Any, origin: str) -> None:
        if not isinstance(value, str) or len(value) < MIN_LENGTH or value in self.secrets:
            return
        if len(set(value)) < MIN_DISTINCT:
            return  # "00000000…" (fuzzers) matches unrelated data: not a secret worth scanning for
        if SCHEMA_WORD.fullmatch(value):
            return  # a field or operation name drawn from the schema (see SCHEMA_WORD)
        with self.lock:
            self.secrets[value] = origin
            for name, form in forms_of(value).items():
                self.forms_total += 1
                key = form.lower()
                if len(key) >= MIN_LENGTH:
                    self.patterns.setdefault(key, (value, name))
            self._dirty = True

    def _current(self):
        if self._dirty or self._automaton is None:
            with self.lock:
                automaton = ahocorasick.Automaton()
                for key, payload in self.patterns.items():
                    automaton.add_word(key, payload)
                automaton.make_automaton()
                self._automaton, self._dirty = automaton, False
        return self._automaton

    def find(self, text: str | bytes | None) -> list[tuple[str, str, str]]:
        """[(origin, form name, preview)] of every tracked secret present in `text`: one hit per secret."""
        if not text or not self.patterns:
            return []
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        self.counts["bytes"] += len(text)
        found: dict[str, str] = {}
        for _end, (value, name) in self._current().iter(text.lower()):
            found.setdefault(value, name)
        return [(self.secrets[value], name, _preview(value)) for value, name in found.items()]


def _preview(value: str) -> str:
    # Enough to recognise a test's canary, never the whole value (reports are logs too).
    return repr(value[:4] + "…" + value[-2:]) + f"[{len(value)}]"


def secret_leaves(value: Any, *, key: str = "") -> Iterable[str]:
    """Every string leaf of a JSON value (dict keys are not secrets)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from secret_leaves(v, key=str(k))
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from secret_leaves(v, key=key)


def _sensitive_key(name: str) -> bool:
    lowered = str(name).lower()
    return any(word in lowered for word in _SENSITIVE_WORDS)


def connection_secrets(type_name: str | None, config: Any) -> Iterable[tuple[str, str]]:
    """(field path, value) of every secret in a connection config, from the connection-type registry.

    Secret fields (`secret=True`) entirely; for mapping fields (headers/params/data), values under a
    sensitive-looking key and, since every such value is meant to be write-only (issue 9 item 6), also
    every other value of at least MIN_LENGTH characters that is not an obviously public token (a MIME type,
    a URL).
    """
    from apps.engine import connection_types

    if not isinstance(config, Mapping):
        return
    try:
        types = [connection_types.get_type(type_name)] if type_name else list(connection_types.REGISTRY.values())
    except connection_types.ConfigError:
        types = list(connection_types.REGISTRY.values())
    secret_names = {f.name for t in types for f in t.fields if f.secret}
    mapping_names = {f.name for t in types for f in t.fields if f.kind == "mapping"}
    for name, value in config.items():
        if name in secret_names:
            for leaf in secret_leaves(value):
                yield name, leaf
        elif name in mapping_names and isinstance(value, Mapping):
            for k, v in value.items():
                for leaf in secret_leaves(v):
                    if len(leaf) >= MIN_LENGTH and (_sensitive_key(k) or not _public_looking(leaf)):
                        yield f"{name}.{k}", leaf


def _public_looking(value: str) -> bool:
    # Values such as "application/json" or a URL appear everywhere in responses; scanning for them
    # would only produce noise.
    lowered = value.lower()
    if lowered.startswith(("http://", "https://")):
        return True
    major = lowered.split("/")[0]
    return lowered.count("/") == 1 and major in ("application", "text", "image", "multipart", "audio", "video")


SCANNER = Scanner()


class _State:
    current_test: str | None = None
    hits: list[Hit] = []
    session_hits: list[Hit] = []
    installed = False


def scan_text(text: Any, where: str) -> None:
    """Scan one text; record every hit against the running test (or the session)."""
    SCANNER.counts["texts"] += 1
    found = SCANNER.find(text if isinstance(text, (str, bytes)) else str(text))
    for origin, form, preview in found:
        hit = Hit(origin=origin, form=form, where=where, test=_State.current_test or "<session>", preview=preview)
        (_State.hits if _State.current_test else _State.session_hits).append(hit)


def track(value: str, origin: str) -> None:
    """Track a secret by hand (tests that hold one the product does not store through EncryptedJSONField)."""
    SCANNER.add(value, origin)


@contextlib.contextmanager
def captured_hits():
    """Collect (and take away from the running test) the hits made inside the block: for the scan's own tests."""
    start = len(_State.hits)
    collected: list[Hit] = []
    try:
        yield collected
    finally:
        collected.extend(_State.hits[start:])
        del _State.hits[start:]


def scan_log_files(directory: Path) -> None:
    for log in sorted(directory.glob("*.log")):
        SCANNER.counts["worker logs"] += 1
        scan_text(log.read_bytes(), f"worker log {log.name}")


# ---------------------------------------------------------------------------------------------- secrets


def _track_encrypted(field_obj, value: Any, instance=None) -> None:
    model = getattr(field_obj, "model", None)
    label = model._meta.label if model is not None else "?"
    pk = getattr(instance, "pk", None) if instance is not None else None
    origin_base = f"{label}{' ' + str(pk) if pk else ''}"
    if label == "deployments.App" and field_obj.name == "callback_signing_secret":
        return  # shown once at App creation by design
    if label == "connections.Connection" and field_obj.name == "config":
        type_name = getattr(instance, "type", None) if instance is not None else None
        for path, leaf in connection_secrets(type_name, value):
            SCANNER.add(leaf, f"connection{' ' + str(pk) if pk else ''} field {path}")
        return
    if label == "connect.ConnectFlow" and field_obj.name == "pending_config":
        # A connection config (or OAuth2 token set) waiting for the App's confirmation: its secret fields only.
        for path, leaf in connection_secrets(None, value):
            SCANNER.add(leaf, f"{origin_base} field pending_config.{path}")
        return
    if label == "runs.CallbackDelivery" and isinstance(value, Mapping):
        value = {k: v for k, v in value.items() if k != "type"}
    for leaf in secret_leaves(value):
        SCANNER.add(leaf, f"{origin_base} field {field_obj.name}")


def _install_secret_tracking() -> None:
    from apps.core.fields import EncryptedJSONField

    original_pre_save = EncryptedJSONField.pre_save
    original_prep = EncryptedJSONField.get_prep_value

    def pre_save(self, model_instance, add):
        value = original_pre_save(self, model_instance, add)
        _track_encrypted(self, value, model_instance)
        return value

    def get_prep_value(self, value):
        # Catches QuerySet.update()/bulk writes that bypass pre_save (origin without an id then).
        _track_encrypted(self, value)
        return original_prep(self, value)

    EncryptedJSONField.pre_save = pre_save
    EncryptedJSONField.get_prep_value = get_prep_value


# -------------------------------------------------------------------------------------------- responses


def _response_text(response) -> str:
    parts = [f"{k}: {v}" for k, v in response.items()]
    if getattr(response, "cookies", None):
        parts.append(response.cookies.output())
    return "\n".join(parts)


def _scan_response(request, response) -> None:
    path = getattr(request, "path", "") or ""
    if path.startswith(EXEMPT_PATH_PREFIXES):
        return
    SCANNER.counts["responses"] += 1
    where = f"response {getattr(request, 'method', '?')} {path} ({response.status_code})"
    scan_text(_response_text(response), f"{where} headers")
    if path == RESOLVE_PATH and response.status_code == 200:
        return
    if _shows_webhook_secret(request, response):
        # The webhook's signing secret is shown in these two answers by design (SPEC §13): everything else in
        # them is scanned, the `secret` field itself is left out.
        scan_text(_without_webhook_secret(response.content), f"{where} body (secret field left out)")
        return
    if getattr(response, "streaming", False):
        _wrap_stream(response, where)
    else:
        scan_text(response.content, f"{where} body")


def _shows_webhook_secret(request, response) -> bool:
    path = getattr(request, "path", "") or ""
    return getattr(request, "method", "") == "POST" and response.status_code in (200, 201) and bool(
        WEBHOOK_SECRET_PATH.fullmatch(path)) and not getattr(response, "streaming", False)


def _without_webhook_secret(content: bytes) -> str:
    try:
        body = json.loads(content)
        body["data"].pop("secret")
    except (ValueError, KeyError, TypeError, AttributeError):
        return content.decode(errors="replace")  # not the documented shape: scan all of it
    return json.dumps(body)


def _wrap_stream(response, where: str) -> None:
    def scanned(chunk):
        SCANNER.counts["chunks"] += 1
        scan_text(chunk, f"{where} streamed chunk")
        return chunk

    if response.is_async:
        source = response.streaming_content

        async def agen():
            async for chunk in source:
                yield scanned(chunk)

        response.streaming_content = agen()
    else:
        response.streaming_content = (scanned(chunk) for chunk in response.streaming_content)


def _install_response_scan() -> None:
    from django.core.handlers.base import BaseHandler

    original = BaseHandler.get_response
    original_async = BaseHandler.get_response_async

    def get_response(self, request):
        response = original(self, request)
        _scan_response(request, response)
        return response

    async def get_response_async(self, request):
        response = await original_async(self, request)
        _scan_response(request, response)
        return response

    BaseHandler.get_response = get_response
    BaseHandler.get_response_async = get_response_async


# ------------------------------------------------------------------------------------------------- logs


class CanaryLogHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(EXEMPT_LOGGERS):
            return
        try:
            text = self.format(record)
        except Exception:  # a broken record is the emitting code's problem, not a leak
            return
        SCANNER.counts["log records"] += 1
        # format() appends exc_text already; stack_info too. Scan the whole formatted record.
        scan_text(text, f"log record {record.name} {record.levelname}")


HANDLER = CanaryLogHandler()


def _attach_log_handler() -> None:
    # The root logger sees every propagating record; loggers that do not propagate get the handler too.
    # Root at DEBUG emulates an operator's LOG_LEVEL=DEBUG: the scan sees the most verbose logging a
    # deployment can produce. Loggers the product pins on purpose (httpx/httpcore at WARNING, see
    # config/settings.py LOGGING) keep their level: that pin is the product's protection, under test too.
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    if HANDLER not in root.handlers:
        root.addHandler(HANDLER)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and not logger.propagate and HANDLER not in logger.handlers:
            logger.addHandler(HANDLER)


# ------------------------------------------------------------------------------------------ stored rows


def _stored_texts() -> Iterable[tuple[str, Any]]:
    from apps.connections.models import ConnectionConfigChange
    from apps.credentials.models import CredentialAccess
    from apps.runs.models import CallbackDelivery, Run, RunEvent
    from apps.webhooks.models import WebhookDelivery
    from apps.workflows.models import WorkflowVersion

    for pk, data in RunEvent.objects.values_list("pk", "data"):
        yield f"RunEvent {pk} data", data
    for row in Run.objects.values_list("pk", "input", "output", "error", "nodes"):
        yield f"Run {row[0]} input/output/error/nodes", row[1:]
    for pk, definition in WorkflowVersion.objects.values_list("pk", "definition"):
        yield f"WorkflowVersion {pk} definition", definition
    for pk, body, metadata, last_error in CallbackDelivery.objects.values_list("pk", "body", "metadata", "last_error"):
        yield f"CallbackDelivery {pk} body/metadata", (body, metadata, last_error)
    for pk, body, last_error in WebhookDelivery.objects.values_list("pk", "body", "last_error"):
        yield f"WebhookDelivery {pk} body", (body, last_error)
    for pk, details in CredentialAccess.objects.values_list("pk", "details"):
        yield f"CredentialAccess {pk} details", details
    for row in ConnectionConfigChange.objects.values_list("pk", "changed_fields", "fingerprint", "actor"):
        yield f"ConnectionConfigChange {row[0]}", row[1:]
    from apps.proxy.models import ProxyCall

    for row in ProxyCall.objects.values_list("pk", "target", "path", "user_id", "error_code", "request_id"):
        yield f"ProxyCall {row[0]}", row[1:]


def scan_database() -> None:
    from django.db import DatabaseError, transaction
    from django.db.transaction import TransactionManagementError

    try:
        with transaction.atomic():
            rows = list(_stored_texts())
    except (DatabaseError, TransactionManagementError):
        # The test left its transaction broken (e.g. it asserted an IntegrityError): nothing is readable.
        SCANNER.counts["unreadable databases"] = SCANNER.counts.get("unreadable databases", 0) + 1
        return
    for where, value in rows:
        SCANNER.counts["rows"] += 1
        scan_text(json.dumps(value, default=str, ensure_ascii=False), where)


def _uses_db(item) -> bool:
    return item.get_closest_marker("django_db") is not None or "_django_db_helper" in getattr(item, "fixturenames", ())


# ------------------------------------------------------------------------------------------ pytest hooks


class CanaryLeak(AssertionError):
    pass


def _raise_hits(phase: str) -> None:
    hits, _State.hits = _State.hits, []
    if hits:
        unique = list(dict.fromkeys(str(h) for h in hits))
        raise CanaryLeak(f"canary scan ({phase}): {len(unique)} leak(s):\n  " + "\n  ".join(unique[:20]))


def pytest_configure(config):
    if _State.installed:
        return
    _State.installed = True
    config.addinivalue_line("markers", "canary_exempt(reason): the canary scan ignores this test's hits")


def _enabled() -> bool:
    # RCP_CANARY=0 switches the scan off (only to measure its cost: bench/ compares both).
    import os

    return os.environ.get("RCP_CANARY", "1") != "0"


def pytest_sessionstart(session):
    if not _enabled():
        return
    # pytest-django configures Django in its own pytest_configure/load_initial_conftests; by now apps load.
    import django
    from django.apps import apps as django_apps

    if not django_apps.ready:
        django.setup()
    _install_secret_tracking()
    _install_response_scan()
    _attach_log_handler()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    _State.current_test = item.nodeid
    _State.hits = []
    _attach_log_handler()  # loggers configured since (e.g. by a test's LOGGING) get it too
    result = yield
    _raise_hits("setup")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        result = yield
    except BaseException:
        # The test failed on its own: still scan, but keep its failure; leaks then fail the session.
        if _uses_db(item):
            scan_database()
        _State.session_hits.extend(_State.hits)
        _State.hits = []
        raise
    if _uses_db(item):
        scan_database()
    if item.get_closest_marker("canary_exempt"):
        _State.hits = []
    _raise_hits("call")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        result = yield
    finally:
        tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
        if isinstance(tmp_path, Path) and tmp_path.exists():
            scan_log_files(tmp_path)
        _State.current_test = None
    if item.get_closest_marker("canary_exempt"):
        _State.hits = []
    _raise_hits("teardown")
    return result


def pytest_sessionfinish(session, exitstatus):
    if _State.session_hits and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    c = SCANNER.counts
    per = SCANNER.forms_total / len(SCANNER.secrets) if SCANNER.secrets else 0
    terminalreporter.write_line(
        f"canary scan: {len(SCANNER.secrets)} secrets tracked, {per:.0f} forms each ({SCANNER.forms_total} forms), "
        f"{c['responses']} responses ({c['chunks']} streamed chunks), {c['log records']} log records, "
        f"{c['rows']} stored rows, {c['worker logs']} worker logs scanned ({c['bytes'] / 1e6:.1f} MB); "
        f"{len(_State.session_hits)} leak(s) outside a passing test"
    )
    if _State.session_hits:
        for line in list(dict.fromkeys(f"{h.test}: {h}" for h in _State.session_hits))[:50]:
            terminalreporter.write_line(f"  canary leak: {line}", red=True)
