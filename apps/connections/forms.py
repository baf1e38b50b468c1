"""Admin forms for connections, built from the connection-type registry.

Each type's fields become form fields named `cfg_<field>`. Secret fields are write-only password inputs
(never rendered back; blank keeps the stored value). Mappings (`headers`, `params`, `data`) are edited as
JSON showing the redacted config: every value appears as `********` (all are secret, SPEC §12), and
sending `********` back keeps the stored value (validate_config with partial_base does both).
"""

from __future__ import annotations

import json
from typing import Any

from django import forms

from apps.engine import connection_types
from apps.engine.connection_types import ConfigError, ConnectionType, Field

from .models import Connection, OAuthProvider

CFG = "cfg_"
# Filled by the OAuth2 authorization flow, never typed in by hand.
OAUTH_FLOW_FIELDS = frozenset({"provider_id", "access_token", "refresh_token", "expires_at", "scope", "token_type"})


def form_fields_of(ctype: ConnectionType) -> list[Field]:
    if ctype.oauth:
        return [f for f in ctype.fields if f.name not in OAUTH_FLOW_FIELDS]
    return list(ctype.fields)


def _form_field(f: Field, *, adding: bool) -> forms.Field:
    label = f.label or f.name
    help_text = f.help_text
    if f.secret:
        hint = "Write-only." if adding else "Write-only: leave blank to keep the stored value."
        return forms.CharField(
            label=label, required=f.required and adding, strip=False,
            help_text=f"{help_text} {hint}".strip(),
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        )
    if f.kind == "integer":
        return forms.IntegerField(label=label, required=f.required, help_text=help_text, initial=f.default)
    if f.kind == "choice":
        choices = [(c, c) for c in f.choices]
        if f.default is None and not f.required:
            choices = [("", "---------"), *choices]
        return forms.ChoiceField(label=label, required=f.required, choices=choices, initial=f.default,
                                 help_text=help_text)
    if f.kind == "mapping":
        hint = "A JSON object." + (" Every value is secret: it shows as ******** and is kept when left so."
                                   if f.sensitive_values else "")
        return forms.CharField(label=label, required=False, widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
                               help_text=f"{help_text} {hint}".strip(), initial="{}")
    if f.kind == "list":
        initial = ", ".join(f.default) if isinstance(f.default, list) else ""
        return forms.CharField(label=label, required=False, help_text=f"{help_text} Comma-separated.".strip(),
                               initial=initial)
    widget = forms.URLInput(attrs={"size": 60}) if f.kind == "url" else forms.TextInput(attrs={"size": 40})
    return forms.CharField(label=label, required=f.required, strip=False, widget=widget, help_text=help_text,
                           initial=f.default)


class ConnectionAdminForm(forms.ModelForm):
    """Base class; `connection_form_class` adds the per-type fields. `self.config` holds the validated config."""

    connection_type: str = ""
    config: dict

    class Meta:
        model = Connection
        fields = ("project", "name")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.adding = self.instance._state.adding
        ctype = connection_types.get_type(self.connection_type)
        self.ctype = ctype
        if self.adding:
            self.instance.type = ctype.name
            if "provider" in self.fields:
                self.fields["provider"].required = True
                self.fields["provider"].help_text = "The OAuth2 provider (of the same project) to authorize with."
            return
        shown = self.instance.redacted_config()
        stored = self.instance.config or {}
        for f in form_fields_of(ctype):
            name = CFG + f.name
            if name not in self.fields:
                continue
            value = shown.get(f.name)
            if f.secret:
                state = "A value is stored." if stored.get(f.name) else "No value stored."
                self.fields[name].help_text = f"{state} {self.fields[name].help_text}"
            elif f.kind == "mapping":
                self.initial[name] = json.dumps(value or {}, indent=2, ensure_ascii=False)
            elif f.kind == "list":
                self.initial[name] = ", ".join(value or [])
            elif value is not None:
                self.initial[name] = value

    def _raw_config(self) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        for f in form_fields_of(self.ctype):
            name = CFG + f.name
            value = self.cleaned_data.get(name)
            if name in self._errors:
                continue
            if f.kind == "mapping":
                text = (value or "").strip()
                if not text:
                    raw[f.name] = {}
                    continue
                try:
                    parsed = json.loads(text)
                except ValueError as exc:
                    self.add_error(name, f"Not valid JSON: {exc.msg} (line {exc.lineno}).")
                    continue
                raw[f.name] = parsed
            elif f.kind == "list":
                raw[f.name] = [part.strip() for part in (value or "").replace("\n", ",").split(",") if part.strip()]
            elif value in (None, "") and (f.secret or f.kind in ("url", "choice", "integer")):
                raw[f.name] = None
            else:
                raw[f.name] = value
        return raw

    def clean(self):
        cleaned = super().clean()
        raw = self._raw_config()
        if self.adding:
            project, name = cleaned.get("project"), (cleaned.get("name") or "").strip()
            if project and name and Connection.objects.filter(project=project, name=name, app__isnull=True).exists():
                self.add_error("name", "A connection with this name already exists in the project.")
            provider = cleaned.get("provider")
            if project and provider and provider.project_id != project.id:
                self.add_error("provider", "This provider belongs to another project.")
        base = None if self.adding else (self.instance.config or {})
        try:
            self.config = connection_types.validate_config(self.ctype.name, {k: v for k, v in raw.items() if v is not None},
                                                           partial_base=base)
        except ConfigError as exc:
            for field_name, problems in exc.errors.items():
                target = CFG + field_name if CFG + field_name in self.fields else None
                self.add_error(target, problems)
        return cleaned


def connection_form_class(type_name: str, *, adding: bool) -> type[ConnectionAdminForm]:
    ctype = connection_types.get_type(type_name)
    attrs: dict[str, Any] = {CFG + f.name: _form_field(f, adding=adding) for f in form_fields_of(ctype)}
    attrs["connection_type"] = ctype.name
    meta_fields = ("project", "name", "provider") if (adding and ctype.oauth) else ("project", "name")
    attrs["Meta"] = type("Meta", (ConnectionAdminForm.Meta,), {"fields": meta_fields})
    return type(f"{ctype.name.title().replace('_', '')}ConnectionForm", (ConnectionAdminForm,), attrs)


def config_field_names(type_name: str) -> list[str]:
    return [CFG + f.name for f in form_fields_of(connection_types.get_type(type_name))]


class ChooseTypeForm(forms.Form):
    type = forms.ChoiceField(label="Connection type", choices=connection_types.TYPE_CHOICES, widget=forms.RadioSelect)


class OAuthProviderAdminForm(forms.ModelForm):
    """The client secret is write-only: never rendered, blank keeps the stored one."""

    new_client_secret = forms.CharField(
        label="Client secret", required=False, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = OAuthProvider
        fields = ("project", "name", "authorize_url", "token_url", "revoke_url", "userinfo_url", "client_id", "scopes",
                  "pkce")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance._state.adding:
            self.fields["new_client_secret"].help_text = "Write-only."
        else:
            state = "A client secret is stored." if self.instance.client_secret else "No client secret stored."
            self.fields["new_client_secret"].help_text = f"{state} Write-only: leave blank to keep it."
        if "scopes" in self.fields:
            self.fields["scopes"].help_text = 'Default scopes, a JSON list such as ["openid", "email"].'

    def clean_scopes(self):
        scopes = self.cleaned_data.get("scopes")
        if scopes in (None, ""):
            return []
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise forms.ValidationError("Must be a JSON list of strings.")
        return scopes
