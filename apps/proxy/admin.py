from __future__ import annotations

from django.contrib import admin

from apps.core.admin_utils import ReadOnlyAdminMixin, badge

from .models import ProxyCall


@admin.register(ProxyCall)
class ProxyCallAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The proxy's audit: one row per call. Paths only (no query string, no body), never a credential."""

    list_display = ("created_at", "method", "target", "path", "status", "outcome_badge", "app", "user_id", "duration_ms",
                    "bytes_sent")
    list_filter = ("outcome", "method", "app")
    search_fields = ("user_id", "target", "=connection_id", "=request_id")
    list_select_related = ("app",)
    date_hierarchy = "created_at"
    fields = ("created_at", "app", "access_key_id", "user_id", "target", "requirement_id", "connection_id", "method",
              "path", "status", "outcome_badge", "error_code", "retried", "latency_ms", "duration_ms", "bytes_sent",
              "request_id")
    readonly_fields = fields

    @admin.display(description="Outcome", ordering="outcome")
    def outcome_badge(self, obj: ProxyCall):
        return badge(obj.outcome, obj.get_outcome_display())
