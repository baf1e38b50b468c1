from __future__ import annotations

import json
import re
import uuid

from django import forms
from django.contrib import admin
from django.db.models import Count, Max
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from apps.connections.models import OAuthProvider
from apps.core.admin_utils import CascadeReadOnlyMixin, ReadOnlyAdminMixin, ReadOnlyInline, admin_link, pretty_json
from apps.core.errors import BadRequest
from apps.engine import connection_types

from .models import Requirement, Workflow, WorkflowVersion
from .services import (
    requirement_create,
    requirement_spec_validate,
    requirement_update,
    workflow_create,
    workflow_version_create,
)
from .validation import validate_definition


def _is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


class RequirementInline(ReadOnlyInline, admin.TabularInline):
    model = Requirement
    fields = ("name", "title", "connection_type_display", "description")
    readonly_fields = fields

    @admin.display(description="Connection type")
    def connection_type_display(self, obj: Requirement) -> str:
        return obj.connection_type


class WorkflowVersionInline(ReadOnlyInline, admin.TabularInline):
    model = WorkflowVersion
    fields = ("number", "description", "created_by", "created_at")
    readonly_fields = fields
    ordering = ("-number",)


@admin.register(Workflow)
class WorkflowAdmin(CascadeReadOnlyMixin, admin.ModelAdmin):
    list_display = ("name", "project", "latest_version", "requirement_count", "updated_at")
    list_filter = ("project",)
    search_fields = ("name", "description")
    list_select_related = ("project__organization",)
    autocomplete_fields = ("project",)
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = [RequirementInline, WorkflowVersionInline]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _latest=Max("versions__number"), _requirements=Count("requirements", distinct=True)
        )

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "project", "add_version_link") if obj else self.readonly_fields

    @admin.display(description="New version")
    def add_version_link(self, obj: Workflow):
        url = reverse("admin:workflows_workflowversion_add") + "?" + urlencode({"workflow": obj.pk})
        return format_html('<a class="button" href="{}">Add a version…</a> (starts from the latest definition)', url)

    @admin.display(description="Latest version", ordering="_latest")
    def latest_version(self, obj: Workflow):
        return f"v{obj._latest}" if obj._latest else "-"

    @admin.display(description="Requirements", ordering="_requirements")
    def requirement_count(self, obj: Workflow) -> int:
        return obj._requirements

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        created = workflow_create(project=obj.project, name=obj.name, description=obj.description)
        obj.pk, obj._state.adding, obj._state.db = created.pk, False, created._state.db


class RequirementAddForm(forms.ModelForm):
    connection_type = forms.ChoiceField(choices=connection_types.TYPE_CHOICES)
    provider = forms.ModelChoiceField(
        queryset=OAuthProvider.objects.all(), required=False, help_text="OAuth2 requirements only."
    )
    scopes = forms.CharField(required=False, help_text="OAuth2 requirements only. Comma-separated.")
    url = forms.URLField(
        required=False, assume_scheme="https", label="API base URL",
        help_text="OAuth2 requirements only, required there: the origin the end users' tokens may be sent to.",
    )
    fixed_config = forms.JSONField(
        required=False, label="Fixed fields",
        help_text='Non-secret fields fixed for every end user, a JSON object, e.g. {"url": "https://api.example.com", '
                  '"header": "X-Api-Key", "prefix": ""}; end users are asked only for the rest. (OAuth2: use the URL above.)',
    )
    verify = forms.JSONField(
        required=False, label="Verification",
        help_text='Optional probe run before end-user credentials are stored, e.g. {"method": "GET", "path": "/v1/me", '
                  '"expect": [200], "account": {"id": "$.id", "label": "$.email"}}; false skips the type\'s default.',
    )

    class Meta:
        model = Requirement
        fields = ("workflow", "name", "title", "description")
        help_texts = {"name": "Machine name (lowercase letters, digits, '_' or '-'); fixed after creation."}

    def clean(self):
        cleaned = super().clean()
        name = (cleaned.get("name") or "").strip()
        if name and not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,99}", name):
            self.add_error("name", "Must be a machine name: lowercase letters, digits, '_' or '-'.")
        ctype, provider, workflow = cleaned.get("connection_type"), cleaned.get("provider"), cleaned.get("workflow")
        spec: dict = {"connection_type": ctype}
        if ctype == "oauth2":
            if provider is None:
                self.add_error("provider", "An OAuth2 requirement needs a provider.")
            elif workflow is not None and provider.project_id != workflow.project_id:
                self.add_error("provider", "This provider belongs to another project.")
            else:
                spec["provider_id"] = str(provider.id)
                spec["scopes"] = [s.strip() for s in (cleaned.get("scopes") or "").split(",") if s.strip()]
            url = cleaned.get("url") or ""
            problem = connection_types.url_problem(url) if url else "An OAuth2 requirement needs the API's base URL."
            if problem:
                self.add_error("url", problem)
            else:
                spec["config"] = {"url": url}
        elif provider is not None or cleaned.get("scopes") or cleaned.get("url"):
            self.add_error("provider", "Provider, scopes and URL apply to OAuth2 requirements only.")
        fixed = cleaned.get("fixed_config")
        if fixed not in (None, {}, ""):
            if ctype == "oauth2":
                self.add_error("fixed_config", "OAuth2 requirements fix their URL in the field above.")
            else:
                spec["config"] = fixed
        if cleaned.get("verify") is not None:
            spec["verify"] = cleaned["verify"]
        if workflow is not None and not self.errors:
            try:  # the API's validation, one place (fixed fields, probe)
                spec = requirement_spec_validate(workflow=workflow, spec=spec)
            except BadRequest as exc:
                for key, messages_ in exc.details.items():
                    target = "verify" if key.startswith("spec.verify") else (
                        "fixed_config" if key.startswith("spec.config") and ctype != "oauth2" else None)
                    self.add_error(target, [f"{key}: {m}" for m in messages_])
        self.spec = spec
        return cleaned


@admin.register(Requirement)
class RequirementAdmin(CascadeReadOnlyMixin, admin.ModelAdmin):
    """Name, type and spec are what links and versions rely on: fixed after creation."""

    list_display = ("name", "title", "workflow", "connection_type_display", "link_count", "created_at")
    list_filter = ("workflow__project", "workflow")
    search_fields = ("name", "title", "workflow__name")
    list_select_related = ("workflow",)
    autocomplete_fields = ("workflow",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_links=Count("links"))

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = RequirementAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("workflow", "name", "title", "description", "connection_type", "provider", "scopes", "url",
                    "fixed_config", "verify")
        return ("workflow", "name", "type", "spec_pretty", "title", "description", "id", "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("workflow", "name", "type", "spec_pretty", "id", "created_at", "updated_at")

    @admin.display(description="Connection type")
    def connection_type_display(self, obj: Requirement) -> str:
        return obj.connection_type

    @admin.display(description="Links", ordering="_links")
    def link_count(self, obj: Requirement) -> int:
        return obj._links

    @admin.display(description="Spec")
    def spec_pretty(self, obj: Requirement):
        return pretty_json(obj.spec)

    def save_model(self, request, obj, form, change):
        if change:
            requirement_update(requirement=obj, title=obj.title, description=obj.description)
            return
        data = form.cleaned_data
        created = requirement_create(
            workflow=data["workflow"], name=data["name"].strip(), title=data["title"], spec=form.spec,
            description=data.get("description") or "",
        )
        obj.pk, obj._state.adding, obj._state.db = created.pk, False, created._state.db


class PrettyJSONField(forms.JSONField):
    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value  # what was typed, as typed
        return json.dumps(value, indent=2, ensure_ascii=False)


class WorkflowVersionAddForm(forms.ModelForm):
    """Version n+1 of a workflow, validated as the API validates it (`validate_definition`: the engine's shape
    check and the database checks); each problem is shown with its path into the definition."""

    definition = PrettyJSONField(widget=forms.Textarea(attrs={"rows": 24, "cols": 100, "style": "font-family: monospace"}),
                                 help_text="The workflow definition (JSON). Secrets never go here: reference a "
                                           "connection ({\"id\": ...}) or a requirement ({\"requirement\": ...}).")

    class Meta:
        model = WorkflowVersion
        fields = ("workflow", "description", "definition")

    def clean(self):
        cleaned = super().clean()
        workflow, definition = cleaned.get("workflow"), cleaned.get("definition")
        if workflow is None or "definition" in self.errors:
            return cleaned
        try:
            validate_definition(definition=definition, project=workflow.project, workflow=workflow)
        except BadRequest as exc:
            problems = [f"{path}: {message}" for path, messages in exc.details.items() for message in messages]
            self.add_error("definition", problems or [exc.message])
        return cleaned


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Immutable: added here (validated like the API does) or through the API, never edited or deleted."""

    form = WorkflowVersionAddForm
    autocomplete_fields = ("workflow",)

    def has_add_permission(self, request) -> bool:
        return request.user.has_perm("workflows.add_workflowversion")

    def get_fields(self, request, obj=None):
        return ("workflow", "description", "definition") if obj is None else self.fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def get_changeform_initial_data(self, request):
        """`?workflow=<id>` starts from that workflow's latest definition (the "Add version" link)."""
        initial = super().get_changeform_initial_data(request)
        latest = (WorkflowVersion.objects.filter(workflow_id=initial["workflow"]).order_by("-number").first()
                  if _is_uuid(initial.get("workflow")) else None)
        if latest is not None:
            initial["definition"] = latest.definition
        return initial

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        created = workflow_version_create(workflow=data["workflow"], definition=data["definition"],
                                          description=data.get("description") or "", actor=request.user)
        obj.pk, obj.number, obj._state.adding, obj._state.db = created.pk, created.number, False, created._state.db

    def save_related(self, request, form, formsets, change):
        pass  # the service stored the references with the version

    list_display = ("__str__", "workflow", "number", "description", "created_by", "created_at")
    list_filter = ("workflow__project", "workflow")
    search_fields = ("workflow__name", "description")
    list_select_related = ("workflow",)
    fields = ("workflow_link", "number", "description", "created_by", "created_at", "definition_pretty",
              "requirements_list", "connections_list", "deployments_list")
    readonly_fields = fields

    @admin.display(description="Workflow")
    def workflow_link(self, obj: WorkflowVersion):
        return admin_link(obj.workflow)

    @admin.display(description="Definition")
    def definition_pretty(self, obj: WorkflowVersion):
        return pretty_json(obj.definition)

    @admin.display(description="Requirements")
    def requirements_list(self, obj: WorkflowVersion):
        items = [(r.name, r.title, r.connection_type) for r in obj.requirements.all()]
        if not items:
            return "None"
        return format_html_join("", "<div><code>{}</code> {} ({})</div>", items)

    @admin.display(description="Connections")
    def connections_list(self, obj: WorkflowVersion):
        connections = list(obj.connections.all())
        if not connections:
            return "None"
        return format_html("{}", format_html_join(
            "", "<div>{}</div>", ((admin_link(c, f"{c.name} ({c.type})"),) for c in connections)
        ))

    @admin.display(description="Deployments")
    def deployments_list(self, obj: WorkflowVersion):
        deployments = list(obj.deployments.select_related("app").order_by("-created_at"))
        if not deployments:
            return "Never deployed"
        return format_html_join(
            "", "<div>{} — {} ({})</div>",
            ((admin_link(d.app), f"{d.created_at:%Y-%m-%d %H:%M}", d.status) for d in deployments),
        )
