from __future__ import annotations

import json

from django.contrib import admin, messages

from apps.core.admin_utils import ReadOnlyAdminMixin, admin_link, badge, collapsed_json, confirm_action
from apps.core.errors import ApplicationError

from .models import WebhookDelivery, WebhookEndpoint
from .services import webhook_redeliver


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Webhooks are created through the management API (the secret is shown in its answer only); here an operator
    sees them, pauses one (`enabled`) or deletes it. The secret is never shown."""

    list_display = ("url", "project", "events_list", "enabled", "created_at")
    list_filter = ("enabled", "project")
    search_fields = ("url", "description")
    list_select_related = ("project",)
    fields = ("project", "url", "events", "app_ids", "description", "enabled", "secret_state", "created_at",
              "updated_at")
    readonly_fields = ("project", "url", "events", "app_ids", "secret_state", "created_at", "updated_at")

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Events")
    def events_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events)

    @admin.display(description="Signing secret")
    def secret_state(self, obj: WebhookEndpoint) -> str:
        return "Set (shown once, in the API's create or rotate answer)."


def _shown_payload(delivery: WebhookDelivery) -> dict:
    """The body, with a connect link's token left out: the page is for operators, the link is for the end user."""
    payload = json.loads(delivery.body)
    data = payload.get("data") or {}
    if data.get("connect_url"):
        payload = {**payload, "data": {**data, "connect_url": "(a connect link: not shown here)"}}
    return payload


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("event_type", "event_id", "endpoint", "status_badge", "attempts", "last_status_code", "created_at")
    list_filter = ("status", "event_type")
    search_fields = ("=event_id", "=id")
    list_select_related = ("endpoint",)
    date_hierarchy = "created_at"
    fields = ("id", "endpoint_link", "event_id", "event_type", "status_badge", "attempts", "last_status_code",
              "last_error", "last_attempt_at", "next_attempt_at", "delivered_at", "redelivery_of", "created_at",
              "payload")
    readonly_fields = fields
    actions = ["redeliver"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: WebhookDelivery):
        return badge(obj.status)

    @admin.display(description="Webhook")
    def endpoint_link(self, obj: WebhookDelivery):
        return admin_link(obj.endpoint)

    @admin.display(description="Payload")
    def payload(self, obj: WebhookDelivery):
        return collapsed_json(_shown_payload(obj), obj.event_type, open=True)

    @admin.action(description="Redeliver selected events (a new delivery of the same event each)")
    def redeliver(self, request, queryset):
        queryset = queryset.select_related("endpoint")
        response = confirm_action(
            self, request, queryset, action="redeliver", title="Redeliver webhook events",
            question="Each event below is sent again to its webhook (same event ID, same body).",
            describe=lambda d: f"{d.event_type} {d.event_id} → {d.endpoint.url}", confirm_label="Yes, redeliver",
        )
        if response is not None:
            return response
        for delivery in queryset:
            try:
                webhook_redeliver(delivery=delivery)
            except ApplicationError as exc:
                self.message_user(request, f"{delivery.event_id}: {exc.message}", messages.WARNING)
            else:
                self.message_user(request, f"{delivery.event_id}: queued again.", messages.SUCCESS)
        return None
