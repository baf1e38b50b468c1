from __future__ import annotations

from datetime import UTC, datetime

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html_join

from apps.core.admin_utils import CascadeReadOnlyMixin, ReadOnlyAdminMixin, ReadOnlyInline, admin_link, badge
from apps.core.errors import ApplicationError
from apps.deployments.selectors import connection_referrers
from apps.deployments.services import connection_delete
from apps.engine import connection_types

from .admin_checks import check_connection
from .forms import ChooseTypeForm, OAuthProviderAdminForm, config_field_names, connection_form_class
from .models import Connection, ConnectionConfigChange, OAuthProvider, OAuthState
from .services import (
    connection_create,
    connection_update_config,
    oauth_provider_create,
    oauth_provider_update,
)


@admin.register(OAuthProvider)
class OAuthProviderAdmin(CascadeReadOnlyMixin, admin.ModelAdmin):
    form = OAuthProviderAdminForm
    list_display = ("name", "project", "client_id", "pkce", "client_secret_set", "created_at")
    list_filter = ("pkce", "project")
    search_fields = ("name", "client_id", "authorize_url")
    list_select_related = ("project__organization",)
    autocomplete_fields = ("project",)
    readonly_fields = ("id", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("project", "name")}),
        ("Endpoints", {"fields": ("authorize_url", "token_url", "revoke_url", "userinfo_url")}),
        ("Client", {"fields": ("client_id", "new_client_secret", "scopes", "pkce")}),
        ("Record", {"fields": ("id", "created_at", "updated_at"), "classes": ("collapse",)}),
    )

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "project") if obj else self.readonly_fields

    @admin.display(description="Client secret", boolean=True)
    def client_secret_set(self, obj: OAuthProvider) -> bool:
        return bool(obj.client_secret)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        secret = data.get("new_client_secret") or ""
        if change:
            oauth_provider_update(provider=obj, client_secret=secret)
            return
        created = oauth_provider_create(
            project=data["project"], name=data["name"], authorize_url=data["authorize_url"],
            token_url=data["token_url"], client_id=data["client_id"], client_secret=secret,
            scopes=data.get("scopes") or [], revoke_url=data.get("revoke_url") or "", pkce=data.get("pkce", True),
            userinfo_url=data.get("userinfo_url") or "",
        )
        obj.pk, obj._state.adding, obj._state.db = created.pk, False, created._state.db


class ConnectionConfigChangeInline(ReadOnlyInline, admin.TabularInline):
    model = ConnectionConfigChange
    fields = ("changed_at", "actor", "changed_fields", "fingerprint")
    readonly_fields = fields
    show_change_link = False
    verbose_name = "config change"
    verbose_name_plural = "config history (who, when, which fields: never a value)"


class OwnerFilter(admin.SimpleListFilter):
    title = "owner"
    parameter_name = "owner"

    def lookups(self, request, model_admin):
        return Connection.Owner.choices

    def queryset(self, request, queryset):
        if self.value() == Connection.Owner.PROJECT:
            return queryset.filter(app__isnull=True)
        if self.value() == Connection.Owner.END_USER:
            return queryset.filter(app__isnull=False)
        return queryset


# SPEC §13 health and refresh schedule: written by the refresh, shown read-only.
HEALTH_FIELDS = ("health", "status_reason", "refresh_failures", "last_verified_at", "last_refreshed_at", "next_refresh_at")


@admin.register(Connection)
class ConnectionAdmin(CascadeReadOnlyMixin, admin.ModelAdmin):
    """Per-type forms from the registry; writes go through the services so history is recorded.

    Adding is two steps without JavaScript: pick a type, then fill that type's form (`?type=<name>`).
    """

    list_display = ("name", "type", "status_badge", "owner_display", "project", "app", "user_id", "updated_at")
    list_filter = ("type", "status", "health", OwnerFilter, "project")
    search_fields = ("name", "user_id")
    list_select_related = ("project__organization", "app")
    autocomplete_fields = ("project", "provider")
    inlines = [ConnectionConfigChangeInline]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []
    actions = ["test_connections"]
    choose_type_template = "admin/connections/connection/choose_type.html"

    # ---- type selection -------------------------------------------------------------------------
    def _type_for(self, request, obj=None) -> str | None:
        if obj is not None:
            return obj.type
        try:
            return connection_types.canonical_type(request.GET.get("type", ""))
        except connection_types.ConfigError:
            return None

    def add_view(self, request, form_url="", extra_context=None):
        if self._type_for(request) is None:
            if not self.has_add_permission(request):
                raise PermissionDenied
            context = {
                **self.admin_site.each_context(request),
                "title": "Add connection: choose a type",
                "opts": self.model._meta,
                "form": ChooseTypeForm(),
                "types": [
                    (t.name, t.label, ", ".join(f.label or f.name for f in t.fields if f.secret) or "none")
                    for t in connection_types.REGISTRY.values()
                ],
            }
            request.current_app = self.admin_site.name
            return TemplateResponse(request, self.choose_type_template, context)
        ctype = connection_types.get_type(self._type_for(request))
        extra_context = {**(extra_context or {}), "title": f"Add {ctype.label} connection"}
        return super().add_view(request, form_url, extra_context)

    # ---- forms ----------------------------------------------------------------------------------
    def get_form(self, request, obj=None, change=False, **kwargs):
        type_name = self._type_for(request, obj) or "http"
        form_class = connection_form_class(type_name, adding=obj is None)
        kwargs["form"] = form_class
        kwargs["fields"] = list(form_class._meta.fields) if obj is None else []
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        type_name = self._type_for(request, obj) or "http"
        config = ("Configuration", {"fields": config_field_names(type_name)})
        if obj is None:
            head = ["project", "name", "type_label"]
            if connection_types.get_type(type_name).oauth:
                head.append("provider")
            return ((None, {"fields": head}), config)
        fieldsets = [
            (None, {"fields": ("name", "type_label", "status_badge", "project", "owner_display", "app", "user_id")}),
            config,
        ]
        if obj.type == "oauth2":
            fieldsets.append(("OAuth2", {"fields": ("provider", "token_state", "expires_at")}))
        fieldsets.append(("Health", {"fields": HEALTH_FIELDS}))
        fieldsets.append(("Account", {"fields": ("account_display",)}))
        fieldsets.append(("Used by", {"fields": ("referrers",)}))
        fieldsets.append(("Record", {"fields": ("id", "created_by", "created_at", "updated_by", "updated_at"),
                                     "classes": ("collapse",)}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ("type_label",)
        return ("name", "type_label", "status_badge", "project", "owner_display", "app", "user_id", "provider",
                "token_state", "expires_at", *HEALTH_FIELDS, "referrers", "id", "created_by", "created_at", "updated_by",
                "updated_at", "account_display")

    def save_model(self, request, obj, form, change):
        if change:
            updated = connection_update_config(connection=obj, config=form.config, actor=request.user)
            obj.status, obj.updated_by = updated.status, updated.updated_by
            return
        data = form.cleaned_data
        created = connection_create(
            project=data["project"], name=data["name"], type=form.ctype.name, config=form.config,
            actor=request.user, provider=data.get("provider"),
        )
        obj.pk, obj.status, obj._state.adding, obj._state.db = created.pk, created.status, False, created._state.db

    # ---- delete ---------------------------------------------------------------------------------
    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        if protected:
            # Say which workflow versions (and Apps) hold the connection, not just the internal refs.
            protected = []
            for connection in objs:
                refs = connection_referrers(connection=connection)
                apps = ", ".join(a["app"] for a in refs["apps"])
                for version in refs["versions"]:
                    protected.append(f"{connection.name}: workflow “{version['workflow']}” version {version['number']}")
                if apps:
                    protected.append(f"{connection.name}: deployed on App(s) {apps}")
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj):
        connection_delete(connection=obj)

    def delete_queryset(self, request, queryset):
        for connection in queryset:
            try:
                connection_delete(connection=connection)
            except ApplicationError as exc:
                self.message_user(request, f"{connection.name}: {exc.message}", messages.ERROR)

    def delete_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, object_id)
        if obj is not None:
            refs = connection_referrers(connection=obj)
            if refs["versions"]:
                used_by = "; ".join(f"“{v['workflow']}” v{v['number']}" for v in refs["versions"])
                self.message_user(
                    request, f"“{obj.name}” cannot be deleted while workflow versions reference it: {used_by}.",
                    messages.ERROR,
                )
                return HttpResponseRedirect(reverse("admin:connections_connection_change", args=[obj.pk]))
        return super().delete_view(request, object_id, extra_context)

    # ---- display --------------------------------------------------------------------------------
    @admin.display(description="Type")
    def type_label(self, obj: Connection | None) -> str:
        type_name = obj.type if obj and obj.type else None
        if type_name is None:
            return "-"
        return f"{connection_types.get_type(type_name).label} ({type_name})"

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Connection):
        return badge(obj.status, obj.get_status_display())

    @admin.display(description="Owner")
    def owner_display(self, obj: Connection) -> str:
        return f"End user {obj.user_id}" if obj.app_id else "Project (shared)"

    @admin.display(description="Account")
    def account_display(self, obj: Connection) -> str:
        # SPEC §13 account identity: not secret (an id and a label the upstream gave).
        account = obj.account or {}
        if not account.get("id"):
            return "unknown"
        return f"{account.get('label') or account['id']} (id {account['id']})"

    @admin.display(description="OAuth2 token")
    def token_state(self, obj: Connection) -> str:
        return check_oauth_state(obj)

    @admin.display(description="Referenced by")
    def referrers(self, obj: Connection):
        refs = connection_referrers(connection=obj)
        if not refs["versions"]:
            return "No workflow version references this connection."
        return format_html_join(
            "", "<div>{} v{}</div>", ((v["workflow"], v["number"]) for v in refs["versions"])
        )

    # ---- actions --------------------------------------------------------------------------------
    @admin.action(description="Test selected connections")
    def test_connections(self, request, queryset):
        for connection in queryset:
            result = check_connection(connection)
            level = messages.SUCCESS if result.ok else messages.ERROR
            self.message_user(request, f"{connection.name}: {result.message}", level)


def check_oauth_state(obj: Connection) -> str:
    cfg = obj.config or {}
    if not cfg.get("access_token"):
        return "No token yet (waiting for consent)."
    expires_at = cfg.get("expires_at")
    refresh = "refresh token stored" if cfg.get("refresh_token") else "no refresh token"
    if isinstance(expires_at, int):
        when = datetime.fromtimestamp(expires_at, tz=UTC)
        state = "expired" if when <= timezone.now() else "valid"
        return f"Access token {state} (expires {when:%Y-%m-%d %H:%M} UTC); {refresh}."
    return f"Access token stored without expiry; {refresh}."


@admin.register(ConnectionConfigChange)
class ConnectionConfigChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("connection", "changed_at", "actor", "changed_fields", "fingerprint")
    list_filter = ("changed_at",)
    search_fields = ("connection__name", "actor")
    list_select_related = ("connection",)
    fields = ("connection_link", "changed_at", "actor", "changed_fields", "fingerprint")
    readonly_fields = fields

    @admin.display(description="Connection")
    def connection_link(self, obj):
        return admin_link(obj.connection)


@admin.register(OAuthState)
class OAuthStateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Pending authorization flows. The PKCE verifier, the state digest and the bindings are never shown."""

    list_display = ("connection", "app", "user_id", "created_at", "expires_at", "used")
    list_filter = ("used_at", "expires_at")
    search_fields = ("connection__name", "user_id")
    list_select_related = ("connection", "app")
    fields = ("connection_link", "app", "user_id", "requirement", "redirect_uri", "return_to", "created_at",
              "expires_at", "used_at")
    readonly_fields = fields

    @admin.display(description="Used", boolean=True)
    def used(self, obj) -> bool:
        return obj.used_at is not None

    @admin.display(description="Connection")
    def connection_link(self, obj):
        return admin_link(obj.connection)
