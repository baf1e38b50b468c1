from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.utils import timezone

from apps.core.admin_utils import CascadeReadOnlyMixin, badge, confirm_action, show_once_response

from .models import AccessKey, Organization, Project
from .services import access_key_create


class ProjectInline(admin.TabularInline):
    model = Project
    extra = 0
    fields = ("name", "created_at")
    readonly_fields = ("created_at",)
    show_change_link = True


@admin.register(Organization)
class OrganizationAdmin(CascadeReadOnlyMixin, admin.ModelAdmin):
    list_display = ("name", "project_count", "created_at")
    search_fields = ("name",)
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = [ProjectInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_project_count=Count("projects"))

    @admin.display(description="Projects", ordering="_project_count")
    def project_count(self, obj: Organization) -> int:
        return obj._project_count


@admin.register(Project)
class ProjectAdmin(CascadeReadOnlyMixin, admin.ModelAdmin):
    list_display = ("name", "organization", "created_at")
    list_filter = ("organization",)
    search_fields = ("name", "organization__name")
    list_select_related = ("organization",)
    autocomplete_fields = ("organization",)
    readonly_fields = ("id", "created_at", "updated_at")


class RevokedFilter(admin.SimpleListFilter):
    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request, model_admin):
        return (("yes", "Revoked"), ("no", "Not revoked"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(revoked_at__isnull=True)
        return queryset


class AccessKeyAddForm(forms.ModelForm):
    class Meta:
        model = AccessKey
        fields = ("organization", "project", "name", "expires_at")
        help_texts = {"project": "Leave empty for an organization-wide key (acts in every project of the organization)."}

    def clean(self):
        cleaned = super().clean()
        organization, project = cleaned.get("organization"), cleaned.get("project")
        if organization and project and project.organization_id != organization.id:
            self.add_error("project", "This project belongs to another organization.")
        return cleaned


@admin.register(AccessKey)
class AccessKeyAdmin(admin.ModelAdmin):
    """Keys are created here with the raw key shown once (on the page answering the save), then only the
    preview. The digest is never shown."""

    list_display = ("name", "preview", "scope", "organization", "expires_at", "revoked", "last_used_at", "created_at")
    list_filter = (RevokedFilter, "organization", "project")
    search_fields = ("name", "preview", "organization__name", "project__name")
    list_select_related = ("organization", "project")
    autocomplete_fields = ("organization", "project")
    actions = ["revoke_keys"]
    add_form = AccessKeyAddForm

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("organization", "project", "name", "expires_at")
        return ("id", "organization", "project", "name", "preview", "expires_at", "revoked_at", "last_used_at",
                "created_by", "created_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("id", "organization", "project", "preview", "revoked_at", "last_used_at", "created_by", "created_at")

    @admin.display(description="Scope")
    def scope(self, obj: AccessKey) -> str:
        return "Organization-wide" if obj.is_org_wide else f"Project: {obj.project.name}"

    @admin.display(description="Revoked", ordering="revoked_at")
    def revoked(self, obj: AccessKey):
        if obj.revoked_at:
            return badge("failed", "revoked")
        if obj.expires_at and obj.expires_at <= timezone.now():
            return badge("expired", "expired")
        return badge("active", "usable")

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw = access_key_create(
            organization=form.cleaned_data["organization"], project=form.cleaned_data.get("project"),
            name=form.cleaned_data.get("name") or "", expires_at=form.cleaned_data.get("expires_at"), actor=request.user,
        )
        # The admin continues with `obj` (log entry, response): make it the saved key.
        obj.pk, obj.digest, obj.preview, obj.created_by = key.pk, key.digest, key.preview, key.created_by
        obj._state.adding, obj._state.db = False, key._state.db
        request._created_access_key = raw

    def response_add(self, request, obj, post_url_continue=None):
        raw = getattr(request, "_created_access_key", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        return show_once_response(
            self, request, obj=obj, title="Access key created", secret_label="Access key", secret=raw,
            notes=["Send it as `Authorization: Bearer <key>`. Only a digest is stored; if it is lost, create a new "
                   "key and revoke this one."],
        )

    @admin.action(description="Revoke selected access keys")
    def revoke_keys(self, request, queryset):
        response = confirm_action(
            self, request, queryset, action="revoke_keys", title="Revoke access keys",
            question="These keys will stop working immediately. Revoke them?",
            describe=lambda k: f"{k.name or 'key'} ({k.preview}) — {self.scope(k)}",
        )
        if response is not None:
            return response
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} access key(s).", messages.SUCCESS)
        return None
