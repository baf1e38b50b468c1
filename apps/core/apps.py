import logging

from django.apps import AppConfig
from django.conf import settings


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"

    def ready(self) -> None:
        from django.core.signals import request_finished
        from django.db.backends.signals import connection_created

        from . import checks  # noqa: F401  (registers the system checks)
        from .middleware import end_request_log_context
        from .outage import on_connection_created

        connection_created.connect(on_connection_created, dispatch_uid="core-database-outage-over")
        request_finished.connect(end_request_log_context, dispatch_uid="core-log-context-end-request")
        if settings.LOG_FORMAT == "json":
            # Python warnings (a library's UserWarning at start) become JSON lines too, not raw stderr text.
            logging.captureWarnings(True)
