from __future__ import annotations

from django.contrib import admin, messages

from apps.connections.models import Connection
from apps.core.admin_utils import CascadeReadOnlyMixin, ReadOnlyAdminMixin, admin_link, badge, confirm_action

from .models import ConnectFlow, EndUserLink, UsedConnectToken
from .services import link_revoke


class ConnectionStatusFilter(admin.SimpleListFilter):
    """A link counts only while its connection is active: filter by the connection's status."""

    title = "connection status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return Connection.Status.choices

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(connection__status=self.value())
        return queryset


@admin.register(EndUserLink)
class EndUserLinkAdmin(CascadeReadOnlyMixin, admin.ModelAdmin):
    """Links are created by the connect flow (hosted page or connect API); the admin views and revokes them."""

    list_display = ("user_id", "app", "requirement", "connection_type", "status_badge", "account_label", "created_at")
    list_filter = ("app", ConnectionStatusFilter, "requirement")
    search_fields = ("user_id",)
    list_select_related = ("app", "requirement", "connection")
    fields = ("app_link", "user_id", "requirement_link", "connection_link", "status_badge", "account_label", "created_at",
              "updated_at")
    readonly_fields = fields
    actions = ["revoke_links"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def delete_model(self, request, obj):
        link_revoke(link=obj)

    def delete_queryset(self, request, queryset):
        for link in queryset.select_related("connection"):
            link_revoke(link=link)

    @admin.display(description="Type")
    def connection_type(self, obj: EndUserLink) -> str:
        return obj.connection.type

    @admin.display(description="Account")
    def account_label(self, obj: EndUserLink) -> str:
        # SPEC §13: whose upstream account the link holds (not secret); "" when the upstream did not say.
        account = obj.connection.account or {}
        return str(account.get("label") or account.get("id") or "")

    @admin.display(description="Status", ordering="connection__status")
    def status_badge(self, obj: EndUserLink):
        return badge(obj.connection.status, obj.connection.get_status_display())

    @admin.display(description="App")
    def app_link(self, obj: EndUserLink):
        return admin_link(obj.app)

    @admin.display(description="Requirement")
    def requirement_link(self, obj: EndUserLink):
        return admin_link(obj.requirement)

    @admin.display(description="Connection")
    def connection_link(self, obj: EndUserLink):
        return admin_link(obj.connection)

    @admin.action(description="Revoke selected links (deletes the end users' connections)")
    def revoke_links(self, request, queryset):
        queryset = queryset.select_related("app", "requirement", "connection")
        response = confirm_action(
            self, request, queryset, action="revoke_links", title="Revoke end-user links",
            question="The end users' connections below will be deleted; their runs will need to link again.",
            describe=lambda link: f"{link.app.name} · {link.user_id} · {link.requirement.name}", confirm_label="Yes, revoke",
        )
        if response is not None:
            return response
        for link in queryset:
            label = f"{link.app.name} · {link.user_id} · {link.requirement.name}"
            outcome = link_revoke(link=link)
            upstream = {True: " (revoked at the provider too)", False: " (the provider did not confirm revocation)"}
            self.message_user(request, f"Revoked {label}{upstream.get(outcome.get('revoked_upstream'), '')}.",
                              messages.SUCCESS)
        return None


@admin.register(UsedConnectToken)
class UsedConnectTokenAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Connect links already opened on the hosted page (single use). Written by the page, purged once expired.

    A `jti` is a token's ID, not the token: it cannot be used to connect anything.
    """

    list_display = ("jti", "used_at", "expires_at")
    search_fields = ("jti",)
    date_hierarchy = "used_at"


@admin.register(ConnectFlow)
class ConnectFlowAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """User-verification flows (connect_verifier_url): written by the connect flow, confirmed by the App's backend,
    discarded by the sweep. Read-only; the pending config they hold is encrypted and never shown."""

    list_display = ("id", "app", "user_id", "kind", "status_badge", "outcome", "revoked_upstream", "expires_at")
    list_filter = ("status", "kind", "outcome", "app")
    search_fields = ("user_id", "id")
    list_select_related = ("app",)
    fields = ("id", "app_link", "user_id", "requirement_link", "connection_link", "kind", "status_badge", "outcome",
              "revoked_upstream", "expires_at", "finished_at", "created_at")
    readonly_fields = fields

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: ConnectFlow):
        return badge(obj.status, obj.get_status_display())

    @admin.display(description="App")
    def app_link(self, obj: ConnectFlow):
        return admin_link(obj.app)

    @admin.display(description="Requirement")
    def requirement_link(self, obj: ConnectFlow):
        return admin_link(obj.requirement)

    @admin.display(description="Connection")
    def connection_link(self, obj: ConnectFlow):
        return admin_link(obj.connection) if obj.connection_id else "—"
