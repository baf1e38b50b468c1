"""Settings, read from the environment (12-factor) with django-environ.

Development works with no `.env` at all. With DEBUG off, the process refuses to start unless real
SECRET_KEY, FERNET_KEYS and CREDENTIALS_API_TOKEN are set: the development values below are public.
"""

from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from apps.core.log_formats import log_format

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=True)

# Public development values. Never valid with DEBUG off (checked below).
_DEV_SECRET_KEY = "dev-insecure-secret-key-do-not-use-in-production-0123456789abcdef"
_DEV_FERNET_KEY = "ZGV2LWZlcm5ldC1rZXktbmV2ZXItdXNlLWluLXByb2Q="
_DEV_CREDENTIALS_API_TOKEN = "dev-credentials-api-token"

SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY)
FERNET_KEYS = env.list("FERNET_KEYS", default=[_DEV_FERNET_KEY])
CREDENTIALS_API_TOKEN = env.str("CREDENTIALS_API_TOKEN", default=_DEV_CREDENTIALS_API_TOKEN)
# The development token is public: while it is in use the internal API answers loopback clients only.
CREDENTIALS_API_TOKEN_IS_DEVELOPMENT = CREDENTIALS_API_TOKEN == _DEV_CREDENTIALS_API_TOKEN

if not DEBUG:
    problems = []
    if SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50:
        problems.append("SECRET_KEY (50+ random characters)")
    if not FERNET_KEYS or _DEV_FERNET_KEY in FERNET_KEYS:
        problems.append("FERNET_KEYS (comma-separated keys from Fernet.generate_key())")
    if CREDENTIALS_API_TOKEN == _DEV_CREDENTIALS_API_TOKEN or len(CREDENTIALS_API_TOKEN) < 32:
        problems.append("CREDENTIALS_API_TOKEN (32+ random characters)")
    if problems:
        raise ImproperlyConfigured("DEBUG is off and these are missing or development values: " + "; ".join(problems))

PLATFORM_URL = env.str("PLATFORM_URL", default="http://localhost:8000").rstrip("/")
PLATFORM_HOST = urlsplit(PLATFORM_URL).hostname or "localhost"
# Other names the platform answers to (the test client's `testserver`, loopback addresses).
PLATFORM_HOST_ALIASES = env.list("PLATFORM_HOST_ALIASES", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
APPS_DOMAIN = env.str("APPS_DOMAIN", default="apps.localhost").strip(".").lower()

# Host validation is done by apps.deployments.middleware.AppHostMiddleware, which knows the platform
# host, every `<uuid>.<APPS_DOMAIN>` name and the custom App hostnames stored in the database; a
# static list cannot hold the latter. Unknown hosts get a 400 there, before any view runs.
ALLOWED_HOSTS = ["*"]

# Development default: on (demo upstream and local test servers live on loopback); off in production.
ALLOW_PRIVATE_NETWORK_TARGETS = env.bool("ALLOW_PRIVATE_NETWORK_TARGETS", default=DEBUG)
RUNS_EXECUTOR = env.str("RUNS_EXECUTOR", default="thread")
if RUNS_EXECUTOR not in ("thread", "celery"):
    raise ImproperlyConfigured("RUNS_EXECUTOR must be 'thread' or 'celery'")
# When set, workers resolve credentials through the internal API of this URL instead of in process.
CREDENTIALS_API_URL = env.str("CREDENTIALS_API_URL", default="")
CALLBACK_RETRY_BASE_SECONDS = env.float("CALLBACK_RETRY_BASE_SECONDS", default=2.0)
CALLBACK_MAX_ATTEMPTS = env.int("CALLBACK_MAX_ATTEMPTS", default=6)
# Thread executor: background/async runs per web process at once.
RUNS_THREAD_WORKERS = env.int("RUNS_THREAD_WORKERS", default=4)
# A `started` run whose process stopped refreshing its heartbeat for this long is orphaned and redone.
RUNS_LEASE_SECONDS = env.float("RUNS_LEASE_SECONDS", default=30.0)
# Thread executor: pick up runs left `created`/`started` when a server process starts (on its first
# request). Unset = automatic (runserver, gunicorn); true/false forces it for other servers.
RUNS_RECOVER_ON_START = env.bool("RUNS_RECOVER_ON_START", default=None)
# Connect links (SPEC §12): 30 minutes by default, at most 24 hours. A larger value is refused at start
# rather than clamped: a silently shortened lifetime would surprise whoever set it.
CONNECT_TOKEN_TTL_SECONDS = env.int("CONNECT_TOKEN_TTL_SECONDS", default=30 * 60)
if not 0 < CONNECT_TOKEN_TTL_SECONDS <= 24 * 3600:
    raise ImproperlyConfigured("CONNECT_TOKEN_TTL_SECONDS must be between 1 and 86400 (24 hours)")
# MCP session tokens (SPEC §14): default lifetime of POST /v1/mcp/sessions; a caller may ask for less, never
# more than an hour.
MCP_SESSION_TTL_SECONDS = env.int("MCP_SESSION_TTL_SECONDS", default=3600)
if not 0 < MCP_SESSION_TTL_SECONDS <= 3600:
    raise ImproperlyConfigured("MCP_SESSION_TTL_SECONDS must be between 1 and 3600 (1 hour)")
# Refused internal-API calls are counted and logged, one line per reason per this many seconds at most.
INTERNAL_API_REFUSAL_LOG_INTERVAL_SECONDS = env.float("INTERNAL_API_REFUSAL_LOG_INTERVAL_SECONDS", default=60.0)
# Database outage (SPEC §15): requests answer 503 with this Retry-After; one warning line per incident,
# repeated at most this often while it lasts (per process).
DATABASE_UNAVAILABLE_RETRY_AFTER_SECONDS = env.int("DATABASE_UNAVAILABLE_RETRY_AFTER_SECONDS", default=5)
DATABASE_UNAVAILABLE_LOG_INTERVAL_SECONDS = env.float("DATABASE_UNAVAILABLE_LOG_INTERVAL_SECONDS", default=60.0)
SSE_HEARTBEAT_SECONDS = env.float("SSE_HEARTBEAT_SECONDS", default=15.0)
MAX_UPLOAD_BYTES = env.int("MAX_UPLOAD_BYTES", default=10 * 1024 * 1024)
# Budget of every template render (SPEC 12; apps.engine.TemplateLimits, docs/decisions.md "Engine").
TEMPLATE_MAX_OUTPUT_CHARS = env.int("TEMPLATE_MAX_OUTPUT_CHARS", default=1_000_000)
TEMPLATE_MAX_WIDTH = env.int("TEMPLATE_MAX_WIDTH", default=100_000)
TEMPLATE_MAX_LOOP_STEPS = env.int("TEMPLATE_MAX_LOOP_STEPS", default=100_000)
TEMPLATE_MAX_RENDER_SECONDS = env.float("TEMPLATE_MAX_RENDER_SECONDS", default=2.0)
TEMPLATE_MAX_BUILT_CHARS = env.int("TEMPLATE_MAX_BUILT_CHARS", default=16_000_000)
MAX_FILES_PER_REQUEST = 20
# Request limits (SPEC.md section 12): JSON nested deeper → 400; a non-multipart body over
# DATA_UPLOAD_MAX_MEMORY_SIZE (below) → 413. Enforced by apps.core.middleware and apps.core.parsers.
MAX_JSON_DEPTH = env.int("MAX_JSON_DEPTH", default=64)
# Uploads (SPEC.md section 12): bytes of files one App may hold (413 beyond), and how long a file no run
# references is kept before `files_purge_unreferenced` (manage.py purge_files) deletes it.
APP_STORAGE_QUOTA_BYTES = env.int("APP_STORAGE_QUOTA_BYTES", default=1024 * 1024 * 1024)
UNREFERENCED_FILE_RETENTION_HOURS = env.float("UNREFERENCED_FILE_RETENTION_HOURS", default=24.0)
# Stream URLs: lifetime of the run-scoped token in `stream_url` (an EventSource cannot send headers).
STREAM_TOKEN_TTL_SECONDS = env.int("STREAM_TOKEN_TTL_SECONDS", default=600)
# Serve the demo third-party API (/demo-upstream/) used by `manage.py demo`. On in development.
DEMO_UPSTREAM_ENABLED = env.bool("DEMO_UPSTREAM_ENABLED", default=DEBUG)
# Scheduler and retention (SPEC §13 "Scheduler", §15 "Retention"; apps/scheduler, docs/decisions.md "Retention").
# Periods in days; 0 keeps forever. Old rows go in batches of RETENTION_BATCH_SIZE, at most RETENTION_MAX_BATCHES
# per job run (the next run goes on). SCHEDULER_THREAD: unset = a thread in server processes of the thread
# executor; true/false forces it (the celery executor uses beat).
RETENTION_RUNS_DAYS = env.float("RETENTION_RUNS_DAYS", default=30)
RETENTION_AUDIT_DAYS = env.float("RETENTION_AUDIT_DAYS", default=90)
RETENTION_EVERY_SECONDS = env.float("RETENTION_EVERY_SECONDS", default=3600)
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=500)
RETENTION_MAX_BATCHES = env.int("RETENTION_MAX_BATCHES", default=200)
RUNS_RECOVERY_SWEEP_SECONDS = env.float("RUNS_RECOVERY_SWEEP_SECONDS", default=300)
SCHEDULER_THREAD = env.bool("SCHEDULER_THREAD", default=None)
SCHEDULER_TICK_SECONDS = env.float("SCHEDULER_TICK_SECONDS", default=30)
# End-user link lifecycle (SPEC §13). OAuth2 tokens are refreshed this long before they expire, and at least
# every OAUTH_REFRESH_MAX_AGE_SECONDS; the refresh job looks for due connections every OAUTH_REFRESH_EVERY_SECONDS.
OAUTH_REFRESH_AHEAD_SECONDS = env.float("OAUTH_REFRESH_AHEAD_SECONDS", default=600)
OAUTH_REFRESH_MAX_AGE_SECONDS = env.float("OAUTH_REFRESH_MAX_AGE_SECONDS", default=24 * 3600)
OAUTH_REFRESH_EVERY_SECONDS = env.float("OAUTH_REFRESH_EVERY_SECONDS", default=60)
# After a transient refresh failure (network, timeout, 5xx, 429) the next attempt waits this long, doubling per
# consecutive failure up to the cap (runs keep the stored token meanwhile).
OAUTH_REFRESH_RETRY_BASE_SECONDS = env.float("OAUTH_REFRESH_RETRY_BASE_SECONDS", default=60)
OAUTH_REFRESH_RETRY_MAX_SECONDS = env.float("OAUTH_REFRESH_RETRY_MAX_SECONDS", default=3600)
# Webhooks are delivered like run callbacks (CALLBACK_RETRY_BASE_SECONDS, CALLBACK_MAX_ATTEMPTS); the sweep
# re-queues deliveries owed after a restart.
WEBHOOK_RETRY_SWEEP_SECONDS = env.float("WEBHOOK_RETRY_SWEEP_SECONDS", default=60)
# A connect flow waiting for the App owner's confirmation (connect_verifier_url) is discarded after this.
CONNECT_VERIFY_TTL_SECONDS = env.float("CONNECT_VERIFY_TTL_SECONDS", default=600)
# How often the scheduler discards the flows nobody confirmed in time (revoking what they carried).
CONNECT_VERIFY_SWEEP_SECONDS = env.float("CONNECT_VERIFY_SWEEP_SECONDS", default=60)
# The authenticated proxy (SPEC §14; apps/proxy, docs/decisions.md "Proxy"): an answer longer than
# PROXY_MAX_RESPONSE_BYTES is cut; connect/read timeouts per upstream operation, and a total budget per call.
PROXY_MAX_RESPONSE_BYTES = env.int("PROXY_MAX_RESPONSE_BYTES", default=100 * 1024 * 1024)
PROXY_CONNECT_TIMEOUT_SECONDS = env.float("PROXY_CONNECT_TIMEOUT_SECONDS", default=5.0)
PROXY_READ_TIMEOUT_SECONDS = env.float("PROXY_READ_TIMEOUT_SECONDS", default=30.0)
PROXY_TOTAL_TIMEOUT_SECONDS = env.float("PROXY_TOTAL_TIMEOUT_SECONDS", default=300.0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally: /v1/docs works offline
    "apps.core",
    "apps.accounts",
    "apps.connections",
    "apps.workflows",
    "apps.deployments",
    "apps.connect",
    "apps.credentials",
    "apps.runs",
    "apps.webhooks",  # connection webhooks (SPEC §13): endpoints, deliveries, the lifecycle-event receiver
    "apps.demo",  # `manage.py demo` only: no models
    "apps.mcp",  # SPEC §14: Apps as MCP servers (/mcp on the App host, POST /v1/mcp/sessions); no models
    "apps.scheduler",  # periodic jobs: the lease table, beat's schedule, the embedded thread, `manage.py purge`
    "apps.proxy",  # the authenticated proxy (SPEC §14): /v1/proxy/... on App hosts, its audit rows
    *env.list("EXTRA_INSTALLED_APPS", default=[]),
]

MIDDLEWARE = [
    "apps.core.middleware.ServiceHealthMiddleware",  # /healthz, /readyz on any host, before the HTTPS redirect
    "apps.core.metrics_http.MetricsMiddleware",  # /metrics (platform host or IP literal) and the request counter
    "apps.core.middleware.RequestLogContextMiddleware",  # request_id (X-Request-ID) and app_id on every log line
    "apps.core.middleware.RequestLimitsMiddleware",
    "apps.deployments.middleware.AppHostMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
APP_HOST_URLCONF = "config.app_urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock up front so two
    # workers never deadlock upgrading a read lock; the timeout waits instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
# Persistent connections on both backends: opening one per request (Django's default) costs more than a
# whole synchronous run on SQLite (connection set-up and PRAGMAs), and a TCP + auth round trip on PostgreSQL.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # PostgreSQL tuning knobs (docs/decisions.md "PostgreSQL connections", measured by bench/pg_options.sh).
    # DATABASE_POOL: Django's psycopg pool per process instead of one persistent connection per thread
    # (Django requires CONN_MAX_AGE=0 with a pool). DATABASE_PREPARE_THRESHOLD: server-side parameter
    # binding plus psycopg prepared statements after that many executions of one statement (client-side
    # binding, Django's default, never prepares).
    _pg_options = DATABASES["default"].setdefault("OPTIONS", {})
    if env.bool("DATABASE_POOL", default=False):
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        _pg_options["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=1),
            "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=8),
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
        }
    # On by default (threshold 5): the run path's three statements are prepared once per connection, and the
    # server stops re-planning them (bench/pg_server_time.py). Empty turns it off (a PgBouncer older than 1.21
    # in transaction mode cannot keep prepared statements).
    _prepare_threshold = env.str("DATABASE_PREPARE_THRESHOLD", default="5")
    if _prepare_threshold:
        _pg_options["server_side_binding"] = True
        _pg_options["prepare_threshold"] = int(_prepare_threshold)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "var" / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "apps.core.parsers.JSONParser",  # bounded size and depth (SPEC.md section 12)
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "apps.core.errors.exception_handler",
    # Counts only the operations a view lists in `rate_limits` (apps.core.ratelimit).
    "DEFAULT_THROTTLE_CLASSES": ["apps.core.ratelimit.RateLimit"],
    "DEFAULT_SCHEMA_CLASS": "apps.core.schema.AutoSchema",  # drf-spectacular's + the 429 of rate-limited operations
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Runtime connection platform API",
    "DESCRIPTION": "Management API (platform host), App-host API, connect API.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Reads the platform host and the App-host API into one document (App host as its own server).
    "DEFAULT_GENERATOR_CLASS": "apps.management_api.schema.PlatformSchemaGenerator",
    # Several models have a `status`; name each choice set instead of a hash-suffixed `Status...Enum`.
    "ENUM_NAME_OVERRIDES": {
        "ConnectionStatusEnum": "apps.connections.models.Connection.Status",
        "ConnectionOwnerEnum": "apps.connections.models.Connection.Owner",
        "DeploymentStatusEnum": "apps.deployments.models.Deployment.Status",
        "AppAccessTypeEnum": "apps.deployments.models.App.AccessType",
        "RunStatusEnum": "apps.runs.models.Run.Status",
    },
}

# Sessions: the hosted connect page keeps its connect token server-side behind this cookie.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True

SECURE_CONTENT_TYPE_NOSNIFF = True
# same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on form posts and Django's CSRF
# check refuses the admin login. The connect pages set no-referrer themselves (apps/connect).
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    # The `preload` directive only consents to inclusion in the browsers' preload list (submitting the
    # domain is a separate, manual step), so it is on by default and `check --deploy` stays clean. An
    # operator who turns it off has decided against preloading: the reminder (W021) is then silenced.
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    if env.bool("BEHIND_TLS_PROXY", default=False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[PLATFORM_URL])

# Metrics (SPEC §15, apps.core.metrics_http): `/metrics` needs `Authorization: Bearer <METRICS_TOKEN>`;
# without a token it answers loopback clients only (requests no proxy forwarded).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
if METRICS_TOKEN and not DEBUG and len(METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("METRICS_TOKEN must be 32+ random characters (or unset: loopback scrapes only)")
# A Celery worker's own `/metrics` (same rule), e.g. "0.0.0.0:9808"; needs PROMETHEUS_MULTIPROC_DIR. Unset: none.
WORKER_METRICS_BIND = env.str("WORKER_METRICS_BIND", default="")

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
# Redis redelivers a message not acked within this time (a killed worker's run). Keep it above the
# longest run: a run still executing when its message is redelivered waits for its lease (see RUNS_LEASE_SECONDS).
# Redis looks for such messages every interval x throttle seconds (kombu's defaults: 10 x 10).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    "unacked_restore_interval": env.int("CELERY_UNACKED_RESTORE_INTERVAL", default=10),
    "unacked_restore_throttle": env.int("CELERY_UNACKED_RESTORE_THROTTLE", default=10),
}
# Several deployments (or test sessions) can share one Redis: every key gets this prefix, and tasks go
# to this queue, so one never consumes or deletes another's messages.
if env.str("CELERY_KEY_PREFIX", default=""):
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = env.str("CELERY_KEY_PREFIX")
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="celery")

# Django's cache: rate-limit counters (apps.core.ratelimit) live here, so it must be shared by every worker.
# Default: SQLiteCache, one SQLite file under var/ shared by the processes of one machine (apps/core/cache.py).
# Several machines: CACHE_URL=redis://host:6379/1 (Django's own RedisCache). CACHE_KEY_PREFIX separates
# deployments sharing one Redis.
CACHE_URL = env.str("CACHE_URL", default="")
CACHES = {"default": env.cache_url_config(CACHE_URL) if CACHE_URL else {
    "BACKEND": "apps.core.cache.SQLiteCache",
    "LOCATION": env.str("CACHE_SQLITE_PATH", default=str(BASE_DIR / "var" / "cache.sqlite3")),
    "OPTIONS": {"MAX_ENTRIES": 100_000},
}}
if env.str("CACHE_KEY_PREFIX", default=""):
    CACHES["default"]["KEY_PREFIX"] = env.str("CACHE_KEY_PREFIX")


def _rate(name: str, default: str) -> tuple[int, int] | None:
    """`<count>/<second|minute|hour|day>` (or s, m, h, d) → (count, seconds); `off` → None (no limit)."""
    text = env.str(name, default=default).strip().lower()
    if text in ("off", ""):
        return None
    count, _, period = text.partition("/")
    seconds = {"s": 1, "second": 1, "m": 60, "minute": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
    if not count.isdigit() or int(count) < 1 or period not in seconds:
        raise ImproperlyConfigured(f"{name}={text!r}: expected <count>/<second|minute|hour|day>, or off")
    return int(count), seconds[period]


# Rate limits (SPEC §15; apps.core.ratelimit, defaults justified in docs/decisions.md "Rate limits"): a fixed
# window per caller and scope, counted in the cache above; 429 rate_limited + Retry-After beyond.
RATE_LIMITS = {
    "runs": _rate("RATE_LIMIT_RUNS", "600/minute"),  # per access key: POST / and POST /v1/runs
    "anonymous": _rate("RATE_LIMIT_ANONYMOUS", "60/minute"),  # per client IP: the same on public Apps, no key
    "connect": _rate("RATE_LIMIT_CONNECT", "30/minute"),  # per connect token: API writes, hosted page and its forms
    "connect_tokens": _rate("RATE_LIMIT_CONNECT_TOKENS", "300/minute"),  # per access key: POST /v1/connect/tokens
    "management_writes": _rate("RATE_LIMIT_MANAGEMENT_WRITES", "120/minute"),  # per access key: POST/PUT/PATCH/DELETE
    "mcp": _rate("RATE_LIMIT_MCP", "600/minute"),  # per MCP session token or access key: POST /mcp (SPEC §14)
    "mcp_sessions": _rate("RATE_LIMIT_MCP_SESSIONS", "300/minute"),  # per access key: POST /v1/mcp/sessions
    "proxy": _rate("RATE_LIMIT_PROXY", "600/minute"),  # per access key: every /v1/proxy/... call
}
# Client IP for the anonymous limit: REMOTE_ADDR, unless N proxies in front append to X-Forwarded-For (then
# the Nth entry from the right). 0 (the default) never reads the header: a client can write anything there.
RATE_LIMIT_TRUSTED_PROXIES = env.int("RATE_LIMIT_TRUSTED_PROXIES", default=0)

# No log line carries a token (SPEC §12): request lines print the query string (`/connect?token=...`,
# the OAuth callback's `?code=`), so every handler, and the request-line loggers themselves, redact
# token-like query values. runserver's `django.server` logger has its own handler (Django's default),
# redefined here to add the filter.
# Logs (SPEC §15): JSON lines unless DEBUG (LOG_FORMAT=json|text overrides), each carrying request_id,
# app_id, run_id, user_id where known (apps.core.log_context); both formatters also redact the whole line.
try:
    LOG_FORMAT = log_format(env)
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_query_secrets": {"()": "apps.core.log_redaction.RedactQuerySecrets"},
        "log_context": {"()": "apps.core.log_context.AddLogContext"},
    },
    "formatters": {
        "plain": {"()": "apps.core.log_formats.TextFormatter", "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "apps.core.log_formats.JsonFormatter"},
        "django.server": {"()": "django.utils.log.ServerFormatter", "format": "[{server_time}] {message}", "style": "{"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "plain",
                    "filters": ["log_context", "redact_query_secrets"]},
        "django.server": {"class": "logging.StreamHandler", "formatter": "django.server",
                          "filters": ["redact_query_secrets"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.request": {"level": "ERROR", "filters": ["redact_query_secrets"]},
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False,
                          "filters": ["redact_query_secrets"]},
        # httpx logs every request URL (query string included) at INFO: a connection's query
        # parameters can hold credentials, so only warnings from the HTTP stack reach the logs.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
