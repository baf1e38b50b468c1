from __future__ import annotations

from django.contrib import admin

from apps.core.admin_utils import CascadeReadOnlyMixin, ReadOnlyAdminMixin, ReadOnlyInline, admin_link, badge, pretty_json

from .models import CallbackDelivery, File, Run, RunEvent


class RunEventInline(ReadOnlyInline, admin.TabularInline):
    model = RunEvent
    fields = ("sequence", "type", "timestamp", "data_pretty")
    readonly_fields = fields
    ordering = ("sequence",)
    show_change_link = False

    @admin.display(description="Data")
    def data_pretty(self, obj: RunEvent):
        return pretty_json(obj.data)


class CallbackDeliveryInline(ReadOnlyInline, admin.TabularInline):
    model = CallbackDelivery
    fields = ("url", "status", "attempts", "last_status_code", "next_attempt_at", "delivered_at")
    readonly_fields = fields


@admin.register(Run)
class RunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "app", "status_badge", "mode", "user_id", "created_at", "duration")
    list_filter = ("status", "mode", "app")
    search_fields = ("=id", "user_id", "session_id", "idempotency_key")
    list_select_related = ("app",)
    date_hierarchy = "created_at"
    fieldsets = (
        (None, {"fields": ("id", "app_link", "version_link", "status_badge", "mode", "user_id", "session_id",
                           "idempotency_key", "attempts", "cancel_requested")}),
        ("Timing", {"fields": ("created_at", "started_at", "ended_at", "duration")}),
        ("Data", {"fields": ("input_pretty", "output_pretty", "error_pretty", "nodes_pretty", "file_ids")}),
    )
    readonly_fields = ("id", "app_link", "version_link", "status_badge", "mode", "user_id", "session_id",
                       "idempotency_key", "attempts", "cancel_requested", "created_at", "started_at", "ended_at",
                       "duration", "input_pretty", "output_pretty", "error_pretty", "nodes_pretty", "file_ids")
    inlines = [RunEventInline, CallbackDeliveryInline]

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Run):
        return badge(obj.status)

    @admin.display(description="Duration")
    def duration(self, obj: Run) -> str:
        if obj.started_at and obj.ended_at:
            return f"{(obj.ended_at - obj.started_at).total_seconds() * 1000:.0f} ms"
        return "-"

    @admin.display(description="App")
    def app_link(self, obj: Run):
        return admin_link(obj.app)

    @admin.display(description="Workflow version")
    def version_link(self, obj: Run):
        return admin_link(obj.workflow_version)

    @admin.display(description="Input")
    def input_pretty(self, obj: Run):
        return pretty_json(obj.input)

    @admin.display(description="Output")
    def output_pretty(self, obj: Run):
        return pretty_json(obj.output)

    @admin.display(description="Error")
    def error_pretty(self, obj: Run):
        return pretty_json(obj.error)

    @admin.display(description="Nodes")
    def nodes_pretty(self, obj: Run):
        return pretty_json(obj.nodes)


@admin.register(RunEvent)
class RunEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("run", "sequence", "type", "timestamp")
    list_filter = ("type",)
    search_fields = ("=run__id", "type")
    list_select_related = ("run",)
    fields = ("run_link", "sequence", "type", "timestamp", "data_pretty")
    readonly_fields = fields

    @admin.display(description="Run")
    def run_link(self, obj: RunEvent):
        return admin_link(obj.run)

    @admin.display(description="Data")
    def data_pretty(self, obj: RunEvent):
        return pretty_json(obj.data)


@admin.register(File)
class FileAdmin(CascadeReadOnlyMixin, admin.ModelAdmin):
    """Uploads arrive through the App API; the admin lists and may delete them."""

    list_display = ("name", "app", "size", "mime_type", "created_at")
    list_filter = ("app", "mime_type")
    search_fields = ("name", "=id")
    list_select_related = ("app",)
    fields = ("id", "app", "name", "size", "mime_type", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CallbackDelivery)
class CallbackDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The caller's callback `auth` (a bearer token) is encrypted and never shown: only whether one is set."""

    list_display = ("url", "run", "status_badge", "attempts", "last_status_code", "next_attempt_at", "delivered_at")
    list_filter = ("status",)
    search_fields = ("url", "=run__id")
    list_select_related = ("run",)
    fields = ("run_link", "url", "status_badge", "attempts", "last_status_code", "last_error", "next_attempt_at",
              "delivered_at", "created_at", "has_auth", "metadata_pretty")
    readonly_fields = fields

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: CallbackDelivery):
        return badge(obj.status)

    @admin.display(description="Run")
    def run_link(self, obj: CallbackDelivery):
        return admin_link(obj.run)

    @admin.display(description="Authorization", boolean=True)
    def has_auth(self, obj: CallbackDelivery) -> bool:
        return bool(obj.auth)

    @admin.display(description="Metadata")
    def metadata_pretty(self, obj: CallbackDelivery):
        return pretty_json(obj.metadata)
