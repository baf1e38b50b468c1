"""Small helpers shared by the admin modules: confirmation pages, pretty JSON, badges, show-once pages.

Nothing here reads a secret: JSON shown in the admin goes through `redacted_json`, which masks every
value whose key looks like a credential, as defence in depth for free-form JSON (run input, events...).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from apps.engine.connection_types import MASK, is_sensitive_key

BADGE_COLORS = {
    "active": "#2e7d32",
    "completed": "#2e7d32",
    "delivered": "#2e7d32",
    "resolved": "#2e7d32",
    "incomplete": "#9e9d24",
    "created": "#616161",
    "started": "#1565c0",
    "pending": "#616161",
    "retrying": "#ef6c00",
    "superseded": "#616161",
    "expired": "#ef6c00",
    "unsatisfied": "#ef6c00",
    "unauthorized": "#c62828",
    "failed": "#c62828",
    "dead": "#c62828",
    "denied": "#c62828",
    "error": "#c62828",
    "canceled": "#616161",
}


def badge(value: str, label: str | None = None):
    color = BADGE_COLORS.get(str(value), "#616161")
    return format_html(
        '<span style="background:{};color:#fff;padding:2px 8px;border-radius:10px;font-size:11px;'
        'white-space:nowrap">{}</span>',
        color,
        label or value,
    )


def _redact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: (MASK if is_sensitive_key(k) and v not in (None, "") else _redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def redacted_json(value: Any) -> str:
    return json.dumps(_redact(value), indent=2, sort_keys=True, ensure_ascii=False, default=str)


def pretty_json(value: Any, *, redact: bool = True):
    """A <pre> block with the value pretty-printed (credential-like keys masked unless redact=False)."""
    text = redacted_json(value) if redact else json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return format_html('<pre style="white-space:pre-wrap;margin:0">{}</pre>', text)


def collapsed_json(value: Any, summary: str, *, open: bool = False, redact: bool = True):
    """Pretty JSON folded into a <details> element: the page stays short, one click shows the value."""
    text = redacted_json(value) if redact else json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return format_html(
        '<details{}><summary style="cursor:pointer">{}</summary>'
        '<pre style="white-space:pre-wrap;margin:4px 0 0;max-height:400px;overflow:auto">{}</pre></details>',
        " open" if open else "", summary, text,
    )


def admin_link(obj, label: str | None = None):
    if obj is None:
        return "-"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label or str(obj))


def confirm_action(
    modeladmin,
    request,
    queryset: QuerySet,
    *,
    action: str,
    title: str,
    question: str,
    describe: Callable[[Any], str] = str,
    confirm_label: str = "Yes, I'm sure",
    extra_fields: Iterable[tuple[str, str]] = (),
) -> TemplateResponse | None:
    """Render a confirmation page for an admin action; None once the user confirmed (POST with post=yes)."""
    if request.POST.get("post") == "yes":
        return None
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "question": question,
        "objects": [describe(obj) for obj in queryset],
        "queryset": queryset,
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "confirm_label": confirm_label,
        "extra_fields": list(extra_fields),
        "opts": opts,
        "app_label": opts.app_label,
        "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, "admin/confirm_action.html", context)


def show_once_response(modeladmin, request, *, obj, title: str, secret_label: str, secret: str, notes: list[str]):
    """A page that shows a freshly created secret once. Rendered directly (never stored in a message,
    cookie or session), and marked no-store so no cache keeps it."""
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "object": obj,
        "secret_label": secret_label,
        "secret": secret,
        "notes": notes,
        "opts": opts,
        "app_label": opts.app_label,
        "change_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]),
        "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
    }
    request.current_app = modeladmin.admin_site.name
    response = TemplateResponse(request, "admin/show_secret_once.html", context)
    response["Cache-Control"] = "no-store"
    return response


class ReadOnlyAdminMixin:
    """View-only admin: the records are written by the product, never by hand."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInline(ReadOnlyAdminMixin):
    extra = 0
    can_delete = False
    show_change_link = True


class CascadeReadOnlyMixin:
    """Let a parent's delete take its read-only records along (history, events, deployments, audit).

    Those models refuse deletion on their own (ReadOnlyAdminMixin), which would otherwise make Django's
    delete page demand a permission nobody has.
    """

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        read_only = {
            str(model._meta.verbose_name)
            for model, model_admin in self.admin_site._registry.items()
            if isinstance(model_admin, ReadOnlyAdminMixin)
        }
        return deleted, counts, {p for p in perms_needed if str(p) not in read_only}, protected
