from django.contrib import admin

from apps.core.admin_utils import ReadOnlyAdminMixin

from .models import ScheduledJob


@admin.register(ScheduledJob)
class ScheduledJobAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """When each periodic job last ran, how it went, and when it runs next. Written by the scheduler only."""

    list_display = ("name", "last_outcome", "last_started_at", "last_finished_at", "next_run_at", "leased_until", "runs")
    list_filter = ("last_outcome",)
    readonly_fields = list_display + ("last_result",)
