import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()

# Fail closed at start when FERNET_KEYS cannot open the stored secrets (ASGI servers skip system checks).
from apps.core.checks import verify_stored_secrets  # noqa: E402

verify_stored_secrets()
