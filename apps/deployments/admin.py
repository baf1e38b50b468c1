from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from apps.core.admin_utils import (
    CascadeReadOnlyMixin,
    ReadOnlyAdminMixin,
    ReadOnlyInline,
    admin_link,
    badge,
    confirm_action,
    show_once_response,
)
from apps.core.errors import ApplicationError, BadRequest
from apps.workflows.models import WorkflowVersion

from .models import App, Deployment
from .services import (
    BRANDING_FIELDS,
    NOTHING_TO_ROLL_BACK,
    app_create,
    app_update,
    deploy,
    normalize_origins,
    rollback,
    rollback_target,
    validate_branding,
    validate_hostname,
    validate_verifier_url,
)


class OriginsField(forms.CharField):
    """Allowed redirect origins, one per line."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(value)
        return value

    def to_python(self, value):
        text = super().to_python(value) or ""
        origins = [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]
        try:
            return normalize_origins(origins)
        except BadRequest as exc:
            raise forms.ValidationError(exc.details.get("allowed_redirect_origins") or exc.message) from exc


class AppForm(forms.ModelForm):
    allowed_redirect_origins = OriginsField(
        required=False,
        help_text="Origins (scheme://host[:port]) a connect flow may return the end user to; one per line.",
    )

    class Meta:
        model = App
        fields = ("project", "name", "hostname", "access_type", "allowed_redirect_origins", "allow_anonymous_uploads",
                  "connect_verifier_url", "mcp_enabled", *BRANDING_FIELDS)
        help_texts = {"hostname": f"Optional custom hostname; default <app-id>.{settings.APPS_DOMAIN}. Fixed after creation.",
                      "display_name": "Shown on the hosted connect page (blank: the App's name).",
                      "logo_url": "An https URL.", "accent_color": "#rrggbb.",
                      "support_url": "An https URL, linked from the hosted connect page."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "hostname" in self.fields:
            self.fields["hostname"].required = False

    def clean_connect_verifier_url(self):
        try:
            return validate_verifier_url(self.cleaned_data.get("connect_verifier_url") or "")
        except BadRequest as exc:
            raise forms.ValidationError(exc.details.get("connect_verifier_url") or exc.message) from exc

    def clean_hostname(self):
        hostname = (self.cleaned_data.get("hostname") or "").strip()
        if not hostname:
            return ""
        try:
            hostname = validate_hostname(hostname)
        except BadRequest as exc:
            raise forms.ValidationError(exc.details.get("hostname") or exc.message) from exc
        if App.objects.filter(hostname__iexact=hostname).exists():
            raise forms.ValidationError("This hostname is taken.")
        return hostname

    def clean(self):
        cleaned = super().clean()
        try:  # the API's rule (https only, #rrggbb), one place
            cleaned.update(validate_branding({k: cleaned[k] for k in BRANDING_FIELDS if k in cleaned}))
        except BadRequest as exc:
            for field, messages_ in exc.details.items():
                self.add_error(field, messages_)
        project = cleaned.get("project") or (self.instance.project if self.instance.project_id else None)
        name = (cleaned.get("name") or "").strip()
        if project and name and App.objects.filter(project=project, name=name).exclude(pk=self.instance.pk).exists():
            self.add_error("name", "An App with this name already exists in the project.")
        return cleaned

    def validate_unique(self):
        # A blank hostname means "generate one": don't let the model's unique check compare "" values.
        exclude = self._get_validation_exclusions()
        exclude.add("hostname")
        try:
            self.instance.validate_unique(exclude=exclude)
        except forms.ValidationError as exc:
            self._update_errors(exc)


class DeploymentInline(ReadOnlyInline, admin.TabularInline):
    model = Deployment
    fk_name = "app"
    fields = ("created_at", "version_link", "status_badge", "created_by", "rolled_back_from")
    readonly_fields = fields
    ordering = ("-created_at",)
    verbose_name_plural = "deployment history (newest first)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("workflow_version__workflow", "rolled_back_from")

    @admin.display(description="Version")
    def version_link(self, obj: Deployment):
        return admin_link(obj.workflow_version)

    @admin.display(description="Status")
    def status_badge(self, obj: Deployment):
        return badge(obj.status)


class DeployForm(forms.Form):
    version = forms.ModelChoiceField(queryset=WorkflowVersion.objects.none(), label="Workflow version")

    def __init__(self, *args, app: App, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].queryset = (
            WorkflowVersion.objects.filter(workflow__project=app.project_id)
            .select_related("workflow").order_by("workflow__name", "-number")
        )


@admin.register(App)
class AppAdmin(CascadeReadOnlyMixin, admin.ModelAdmin):
    form = AppForm
    list_display = ("name", "hostname", "access_type", "project", "live_version", "updated_at")
    list_filter = ("access_type", "mcp_enabled", "project")
    search_fields = ("name", "hostname")
    list_select_related = ("project__organization", "current_deployment__workflow_version__workflow")
    autocomplete_fields = ("project",)
    inlines = [DeploymentInline]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []
    actions = ["rollback_apps"]

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return ((None, {"fields": ("project", "name", "hostname", "access_type", "allowed_redirect_origins",
                                       "allow_anonymous_uploads", "connect_verifier_url", "mcp_enabled")}),
                    ("Connect page branding", {"fields": BRANDING_FIELDS}))
        return (
            (None, {"fields": ("name", "project", "hostname", "access_type", "allowed_redirect_origins",
                               "allow_anonymous_uploads", "connect_verifier_url", "mcp_enabled")}),
            ("Connect page branding", {"fields": BRANDING_FIELDS}),
            ("Serving", {"fields": ("endpoints", "live_version", "deploy_link", "rollback_link",
                                    "callback_secret_state")}),
            ("Record", {"fields": ("id", "created_at", "updated_at"), "classes": ("collapse",)}),
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("project", "hostname", "endpoints", "live_version", "deploy_link", "rollback_link",
                "callback_secret_state", "id", "created_at", "updated_at")

    @admin.display(description="Live version")
    def live_version(self, obj: App):
        if obj.current_deployment_id is None:
            return "Not deployed"
        return admin_link(obj.current_deployment.workflow_version)

    @admin.display(description="Endpoints")
    def endpoints(self, obj: App):
        port = ""
        platform = settings.PLATFORM_URL
        if ":" in platform.split("//", 1)[-1]:
            port = ":" + platform.rsplit(":", 1)[-1].split("/")[0]
        scheme = platform.split("://", 1)[0]
        return format_html(
            "<div><code>{}://{}{}/</code></div><div><code>{}/apps/{}/</code> (without wildcard DNS)</div>",
            scheme, obj.hostname, port, platform, obj.id,
        )

    @admin.display(description="Deploy")
    def deploy_link(self, obj: App):
        return format_html('<a class="button" href="{}">Deploy a version…</a>',
                           reverse("admin:deployments_app_deploy", args=[obj.pk]))

    @admin.display(description="Callback signing secret")
    def callback_secret_state(self, obj: App) -> str:
        return "Set (shown once, when the App was created)." if obj.callback_signing_secret else "Not set."

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            app_update(app=obj, name=data["name"], access_type=data["access_type"],
                       allowed_redirect_origins=data.get("allowed_redirect_origins") or [],
                       allow_anonymous_uploads=data.get("allow_anonymous_uploads", False),
                       connect_verifier_url=data.get("connect_verifier_url") or "", mcp_enabled=data.get("mcp_enabled", False),
                       **{name: data.get(name) or "" for name in BRANDING_FIELDS})
            return
        created = app_create(
            project=data["project"], name=data["name"], access_type=data["access_type"],
            allowed_redirect_origins=data.get("allowed_redirect_origins") or [], hostname=data.get("hostname") or None,
            allow_anonymous_uploads=data.get("allow_anonymous_uploads", False), mcp_enabled=data.get("mcp_enabled", False),
            connect_verifier_url=data.get("connect_verifier_url") or "",
            **{name: data.get(name) or "" for name in BRANDING_FIELDS},
        )
        obj.pk, obj.hostname, obj._state.adding, obj._state.db = created.pk, created.hostname, False, created._state.db
        request._created_app_secret = created.callback_signing_secret

    def response_add(self, request, obj, post_url_continue=None):
        secret = getattr(request, "_created_app_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        return show_once_response(
            self, request, obj=obj, title="App created", secret_label="Callback signing secret", secret=secret,
            notes=[f"Hostname: {obj.hostname}",
                   "Async-run callbacks are signed with this secret (Standard Webhooks: webhook-id, webhook-timestamp, "
                   "webhook-signature). Keep it where your callback receiver can verify signatures."],
        )

    # ---- deploy view ----------------------------------------------------------------------------
    def get_urls(self):
        custom = [
            path("<path:object_id>/deploy/", self.admin_site.admin_view(self.deploy_view), name="deployments_app_deploy"),
            path("<path:object_id>/rollback/", self.admin_site.admin_view(self.rollback_view),
                 name="deployments_app_rollback"),
        ]
        return custom + super().get_urls()

    def deploy_view(self, request, object_id):
        app = get_object_or_404(App.objects.select_related("project"), pk=object_id)
        if not self.has_change_permission(request, app):
            raise PermissionDenied
        form = DeployForm(request.POST or None, app=app)
        if request.method == "POST" and form.is_valid():
            version = form.cleaned_data["version"]
            try:
                deploy(app=app, version=version, actor=request.user)
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"Deployed {version} to {app.name}.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:deployments_app_change", args=[app.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Deploy a version to {app.name}",
            "opts": self.model._meta,
            "original": app,
            "form": form,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/deployments/app/deploy.html", context)

    # ---- rollback -------------------------------------------------------------------------------
    # Offered only where there is an earlier version to go back to: the change page shows the button only
    # then, and the action confirms only the selected Apps that have one (none: no confirmation at all).

    @admin.display(description="Roll back")
    def rollback_link(self, obj: App):
        target = rollback_target(app=obj)
        if target is None:
            return "Nothing to roll back to: no earlier version of this workflow was deployed to this App."
        return format_html('<a class="button" href="{}">Roll back to {}…</a>',
                           reverse("admin:deployments_app_rollback", args=[obj.pk]), target.workflow_version)

    def _rollback_line(self, app: App, target: Deployment) -> str:
        return f"{app.name}: {app.current_deployment.workflow_version} → {target.workflow_version}"

    def _roll_back(self, request, app: App) -> None:
        try:
            deployment = rollback(app=app, actor=request.user)
        except ApplicationError as exc:
            self.message_user(request, f"{app.name}: {exc.message}", messages.ERROR)
        else:
            self.message_user(request, f"{app.name}: now serving {deployment.workflow_version}.", messages.SUCCESS)

    @admin.action(description="Roll back selected Apps to their previous deployment")
    def rollback_apps(self, request, queryset):
        apps = list(queryset.select_related("current_deployment__workflow_version__workflow"))
        targets = {app.pk: rollback_target(app=app) for app in apps}
        eligible = [app for app in apps if targets[app.pk] is not None]
        for app in apps:
            if targets[app.pk] is None:
                self.message_user(request, f"{app.name}: {NOTHING_TO_ROLL_BACK}", messages.WARNING)
        if not eligible:
            return None
        response = confirm_action(
            self, request, queryset.filter(pk__in=[app.pk for app in eligible]), action="rollback_apps",
            title="Roll back Apps",
            question="Each App below will redeploy the version of its previous deployment (recorded in its history).",
            describe=lambda app: self._rollback_line(app, targets[app.pk]), confirm_label="Yes, roll back",
        )
        if response is not None:
            return response
        for app in eligible:
            self._roll_back(request, app)
        return None

    def rollback_view(self, request, object_id):
        app = get_object_or_404(App.objects.select_related("current_deployment__workflow_version__workflow"),
                                pk=object_id)
        if not self.has_change_permission(request, app):
            raise PermissionDenied
        change_url = reverse("admin:deployments_app_change", args=[app.pk])
        target = rollback_target(app=app)
        if target is None:
            self.message_user(request, f"{app.name}: {NOTHING_TO_ROLL_BACK}", messages.WARNING)
            return HttpResponseRedirect(change_url)
        if request.method == "POST" and request.POST.get("post") == "yes":
            self._roll_back(request, app)
            return HttpResponseRedirect(change_url)
        return confirm_action(
            self, request, App.objects.filter(pk=app.pk), action="", title=f"Roll back {app.name}",
            question="This App will redeploy the version of its previous deployment (recorded in its history).",
            describe=lambda one: self._rollback_line(one, target), confirm_label="Yes, roll back",
        )


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """History is written by deploy/rollback only."""

    list_display = ("app", "version", "status_badge", "created_by", "created_at", "rolled_back_from")
    list_filter = ("status", "app")
    search_fields = ("app__name", "workflow_version__workflow__name")
    list_select_related = ("app", "workflow_version__workflow", "rolled_back_from__workflow_version__workflow")
    fields = ("app_link", "version", "status_badge", "created_by", "created_at", "rolled_back_from")
    readonly_fields = fields

    @admin.display(description="App")
    def app_link(self, obj: Deployment):
        return admin_link(obj.app)

    @admin.display(description="Version")
    def version(self, obj: Deployment):
        return admin_link(obj.workflow_version)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Deployment):
        return badge(obj.status)
