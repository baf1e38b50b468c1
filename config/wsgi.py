import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# Fail closed at start when FERNET_KEYS cannot open the stored secrets (gunicorn skips system checks).
from apps.core.checks import verify_stored_secrets  # noqa: E402

verify_stored_secrets()

# Everything loaded so far lives as long as the process: move it out of the cyclic garbage collector's
# generations, so a full collection during a request no longer walks the whole of Django (bench/: the
# collections triggered mid-request were a visible share of a sync run's time).
gc.freeze()
