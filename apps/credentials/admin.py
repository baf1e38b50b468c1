from __future__ import annotations

from django.contrib import admin

from apps.core.admin_utils import ReadOnlyAdminMixin, badge, pretty_json

from .models import CredentialAccess


@admin.register(CredentialAccess)
class CredentialAccessAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The resolution audit: which IDs were resolved for whom, and the outcome. Never a value."""

    list_display = ("created_at", "requester", "outcome_badge", "app", "user_id", "run_id")
    list_filter = ("outcome", "requester", "app")
    search_fields = ("user_id", "=run_id")
    list_select_related = ("app",)
    date_hierarchy = "created_at"
    fields = ("created_at", "requester", "outcome_badge", "app", "user_id", "run_id", "connection_ids_pretty",
              "requirement_ids_pretty", "details_pretty")
    readonly_fields = fields

    @admin.display(description="Outcome", ordering="outcome")
    def outcome_badge(self, obj: CredentialAccess):
        return badge(obj.outcome, obj.get_outcome_display())

    @admin.display(description="Connection IDs")
    def connection_ids_pretty(self, obj: CredentialAccess):
        return pretty_json(obj.connection_ids)

    @admin.display(description="Requirement IDs")
    def requirement_ids_pretty(self, obj: CredentialAccess):
        return pretty_json(obj.requirement_ids)

    @admin.display(description="Details")
    def details_pretty(self, obj: CredentialAccess):
        return pretty_json(obj.details)
