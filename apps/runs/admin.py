from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from apps.core.admin_utils import (
    CascadeReadOnlyMixin,
    ReadOnlyAdminMixin,
    ReadOnlyInline,
    admin_link,
    badge,
    collapsed_json,
    pretty_json,
)

from .models import CallbackDelivery, File, Run, RunEvent


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
        ("Data", {"fields": ("input_pretty", "output_pretty", "error_pretty", "nodes_table", "file_ids")}),
        ("Events", {"fields": ("events_table",)}),
    )
    readonly_fields = ("id", "app_link", "version_link", "status_badge", "mode", "user_id", "session_id",
                       "idempotency_key", "attempts", "cancel_requested", "created_at", "started_at", "ended_at",
                       "duration", "input_pretty", "output_pretty", "error_pretty", "nodes_table", "file_ids",
                       "events_table")
    inlines = [CallbackDeliveryInline]

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
        return collapsed_json(obj.input, _size(obj.input))

    @admin.display(description="Output")
    def output_pretty(self, obj: Run):
        return "-" if obj.output is None else collapsed_json(obj.output, _size(obj.output), open=True)

    @admin.display(description="Error")
    def error_pretty(self, obj: Run):
        if not obj.error:
            return "-"
        where = f" (node {obj.error['node_id']})" if obj.error.get("node_id") else ""
        return collapsed_json(obj.error, f"{obj.error.get('code', 'error')}{where}: {obj.error.get('message', '')}")

    @admin.display(description="Nodes")
    def nodes_table(self, obj: Run):
        if not obj.nodes:
            return "-"
        rows = []
        for node_id, node in obj.nodes.items():
            error = node.get("error") or {}
            duration = f"{node['duration_ms']:.0f} ms" if node.get("duration_ms") is not None else ""
            rows.append((node_id, badge(_NODE_BADGES.get(node.get("status"), node.get("status", "")),
                                        node.get("status", "")), duration,
                         f"{error.get('type')}: {error.get('message', '')}" if error else ""))
        return _table(("Node", "Status", "Duration", "Error"), rows)

    @admin.display(description="Events")
    def events_table(self, obj: Run):
        """One row per event (consecutive llm.delta events folded into one), data folded; at most EVENT_ROWS rows."""
        events = list(obj.events.order_by("sequence")[: EVENT_ROWS + 1])
        if not events:
            return "-"
        start = events[0].timestamp
        rows, index = [], 0
        while index < len(events) and len(rows) < EVENT_ROWS:
            event = events[index]
            run_of_deltas = 1
            while (event.type == "llm.delta" and index + run_of_deltas < len(events)
                   and events[index + run_of_deltas].type == "llm.delta"):
                run_of_deltas += 1
            offset = f"+{(event.timestamp - start).total_seconds() * 1000:.0f} ms"
            label = event.type if run_of_deltas == 1 else f"llm.delta ×{run_of_deltas}"
            rows.append((event.sequence, offset, badge(_EVENT_BADGES.get(event.type, "created"), label),
                         event.data.get("node_id", "") if isinstance(event.data, dict) else "", _event_summary(event),
                         collapsed_json(event.data, "data")))
            index += run_of_deltas
        table = _table(("#", "Time", "Type", "Node", "Summary", "Data"), rows)
        if index < len(events) or len(events) > EVENT_ROWS:
            url = reverse("admin:runs_runevent_changelist") + "?" + urlencode({"run__id__exact": obj.pk})
            return format_html('{}<p>Only the first events are shown: <a href="{}">all events of this run</a>.</p>',
                               table, url)
        return table


EVENT_ROWS = 300
_NODE_BADGES = {"success": "completed", "failure": "failed", "skipped": "canceled"}
_EVENT_BADGES = {"run.created": "created", "run.started": "started", "run.completed": "completed",
                 "run.failed": "failed", "run.canceled": "canceled", "node.started": "started",
                 "node.completed": "completed", "node.failed": "failed", "node.skipped": "canceled"}


def _size(value) -> str:
    if isinstance(value, dict):
        return f"{len(value)} field{'s' if len(value) != 1 else ''}: {', '.join(list(map(str, value))[:6])}"
    if isinstance(value, list):
        return f"{len(value)} item{'s' if len(value) != 1 else ''}"
    return "value"


def _event_summary(event: RunEvent) -> str:
    data = event.data if isinstance(event.data, dict) else {}
    error = data.get("error") or {}
    if event.type == "node.completed" and data.get("duration_ms") is not None:
        return f"{data['duration_ms']:.0f} ms"
    if event.type == "node.failed":
        return f"{error.get('type')}: {error.get('message', '')}"
    if event.type == "node.skipped":
        return str(data.get("reason", ""))
    if event.type in ("run.failed", "run.canceled"):
        return f"{error.get('code')}: {error.get('message', '')}"
    if event.type == "run.created":
        return str(data.get("mode", ""))
    return ""


def _table(headers: tuple[str, ...], rows: list[tuple]):
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join("", "<tr>{}</tr>", ((format_html_join("", '<td style="vertical-align:top">{}</td>',
                                                                  ((cell,) for cell in row)),) for row in rows))
    return format_html('<table style="width:100%"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', head, body)


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
