"""The hosted page's credential forms, derived from the connection-type registry's field declarations.

Secrets are password inputs and are never rendered back; choices are selects; mappings are JSON
textareas (an `http` connection's headers/params/data hold secrets only, so they are never rendered
back either); lists are one entry per line. Parsing yields a config for `validate_config`, which has
the last word on what is valid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from apps.engine import connection_types
from apps.engine.connection_types import Field

PREFIX = "f-"


@dataclass
class FormField:
    field: Field
    html_id: str
    value: str
    errors: list[str]

    @property
    def name(self) -> str:
        return PREFIX + self.field.name

    @property
    def label(self) -> str:
        return self.field.label or self.field.name.replace("_", " ").capitalize()

    @property
    def widget(self) -> str:
        f = self.field
        if f.kind == "choice":
            return "select"
        if f.kind in ("mapping", "list"):
            return "textarea"
        if f.secret:
            return "password"
        return {"url": "url", "integer": "number"}.get(f.kind, "text")

    @property
    def choices(self) -> tuple[str, ...]:
        return self.field.choices

    @property
    def help_text(self) -> str:
        f = self.field
        if f.kind == "mapping":
            return (f.help_text + " " if f.help_text else "") + 'A JSON object, e.g. {"X-Team": "blue"}.'
        if f.kind == "list":
            return (f.help_text + " " if f.help_text else "") + "One per line."
        return f.help_text

    @property
    def required(self) -> bool:
        return self.field.required

    @property
    def secret(self) -> bool:
        """Never rendered back: secret fields, and mappings whose every value is secret (SPEC §12)."""
        return self.field.secret or self.field.sensitive_values


def _initial(f: Field) -> str:
    if f.secret or f.default in (None, {}, []):
        return ""
    if isinstance(f.default, (dict, list)):
        return json.dumps(f.default)
    return str(f.default)


def credential_fields(type_name: str, *, id_prefix: str, data=None, errors: dict | None = None,
                      fixed: dict | None = None) -> list[FormField]:
    """Form fields for a (non-OAuth2) connection type. `data`: submitted values to show again (never secrets).
    `fixed`: the requirement's builder-fixed fields (SPEC §13), which the user is not asked for."""
    errors = errors or {}
    result = []
    for f in connection_types.asked_fields(type_name, fixed):
        value = _initial(f)
        if data is not None and not (f.secret or f.sensitive_values):
            # A submitted header/param/data mapping holds secrets: re-typed after an error, never echoed.
            value = data.get(PREFIX + f.name, value)
        result.append(FormField(field=f, html_id=f"{id_prefix}-{f.name}", value=value, errors=list(errors.get(f.name, []))))
    return result


def parse_credentials(type_name: str, data) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """(config, errors) from a submitted form. Blank optional fields are left out so defaults apply."""
    ctype = connection_types.get_type(type_name)
    config: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for f in ctype.fields:
        raw = data.get(PREFIX + f.name)
        if raw is None:
            continue
        if f.kind == "mapping":
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError:
                errors[f.name] = ["must be valid JSON"]
                continue
            if not isinstance(value, dict):
                errors[f.name] = ["must be a JSON object"]
                continue
            config[f.name] = value
        elif f.kind == "list":
            items = [line.strip() for line in raw.splitlines() if line.strip()]
            if items:
                config[f.name] = items
        elif f.kind in ("url", "integer", "choice") or f.secret:
            if raw.strip():
                config[f.name] = raw.strip()
        elif raw == "" and f.default not in (None, ""):
            continue  # blank: the type's default applies
        else:
            config[f.name] = raw
    return config, errors
