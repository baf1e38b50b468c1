"""Settings of the test OAuth2 provider run as a process apart (tests/oauth_provider/standalone.py).

Its own SQLite database (PROVIDER_DB), so a refresh that holds the platform's database write lock while it
calls the provider (single flight, SQLite) never waits on the provider's own writes. Rotating refresh tokens
with reuse protection: a refresh token used twice revokes the whole grant, as strict providers do.
"""

import os

SECRET_KEY = "test-oauth-provider-standalone-not-a-secret-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions", "django.contrib.messages",
    "oauth2_provider", "tests.oauth_provider",
]
MIDDLEWARE = [
    "tests.oauth_provider.standalone.TokenCallLog",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.oauth_provider.standalone"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                       "django.contrib.auth.context_processors.auth",
                                       "django.contrib.messages.context_processors.messages"]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("PROVIDER_DB", ":memory:"),
                         "OPTIONS": {"timeout": 30}}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
OAUTH2_PROVIDER = {
    "PKCE_REQUIRED": True, "ROTATE_REFRESH_TOKEN": True, "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
}
LOGIN_URL = "/o/login/"
