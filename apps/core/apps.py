from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from . import checks  # noqa: F401  (registers the system checks)
        from .outage import on_connection_created

        connection_created.connect(on_connection_created, dispatch_uid="core-database-outage-over")
