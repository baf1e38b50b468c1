from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    """Connection webhooks (SPEC §13): endpoints, deliveries, and the receiver of connection lifecycle events."""

    name = "apps.webhooks"
    label = "webhooks"

    def ready(self) -> None:
        # Imported here, not at the top: the receiver imports models, which need the app registry ready.
        from apps.connections.signals import connection_event

        from .events import on_connection_event

        connection_event.connect(on_connection_event, dispatch_uid="webhooks-connection-event")
