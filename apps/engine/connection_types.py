"""The connection-type registry: which fields each type has, which are secret, how a config is validated.

Pure Python (no Django) so the engine, the services, the admin forms and the API serializers all read
the same declaration. A type declares its fields once; everything else (forms, write-only API fields,
masking, definition validation) is derived from it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import origins

MASK = "********"

# Names that carry credential material. Used to refuse such keys inline in a workflow definition (an
# `http` connection's header/param/data values are ALL secret, whatever their name: SPEC §12).
SENSITIVE_KEY_RE = re.compile(
    r"(^authorization$|^proxy-authorization$|^cookie$|^set-cookie$|api[-_]?key|token|secret|passw|"
    r"^x-auth|^auth$|credential|signature|private[-_]?key|"
    # Key-style names used by common APIs: `key=` (Google), `Ocp-Apim-Subscription-Key`, `X-Functions-Key`,
    # `access_key`, `sig` (SAS tokens).
    r"(^|[-_])key$|^key[-_]|access[-_]?key|subscription|^sig$)",
    re.IGNORECASE,
)

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Request parts that are objects of name -> value: merged key by key, every key of a connection's secret.
REQUEST_MAPPINGS = ("headers", "params", "data")


def is_sensitive_key(name: str) -> bool:
    return bool(SENSITIVE_KEY_RE.search(str(name)))


class ConfigError(ValueError):
    """A config does not fit its type. `errors` maps field name to a list of messages."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "string" | "url" | "integer" | "choice" | "mapping" | "list"
    required: bool = False
    secret: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    label: str = ""
    help_text: str = ""
    # For mappings: every value is secret (write-only, masked in output, not overridable by a node or
    # run input). A name such as `X-Honeycomb-Team` or `appid` says nothing about whether it is a secret.
    sensitive_values: bool = False


@dataclass(frozen=True)
class Probe:
    """A type's default verification request at link time (SPEC §13): `path` is resolved against the
    connection's base URL with RFC 3986 rules (`models` -> `{base_url}/models`, `/v1/me` -> the origin's)."""

    method: str
    path: str


@dataclass(frozen=True)
class ConnectionType:
    name: str
    label: str
    fields: tuple[Field, ...]
    aliases: tuple[str, ...] = ()
    # The request that proves a credential works (None: the type has none; a requirement may declare one).
    probe: Probe | None = None
    # The field that holds the base URL probes resolve against (None: the type does not talk HTTP).
    base_url_field: str | None = None
    # OAuth2 connections are filled by the authorization flow, never typed in by hand.
    oauth: bool = False
    # Fields that decide where the secrets are sent. Changing one of them makes every stored secret
    # "must be re-entered": otherwise a client that may edit but never read a connection could point
    # the stored key at a server of its own.
    destination_fields: tuple[str, ...] = ()

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


def url_problem(value: str) -> str | None:
    """Why `value` cannot be a connection URL, or None.

    A connection URL fixes where its secrets go, so its origin must be literal: no `{placeholder}` (or
    template) in the scheme, userinfo, host or port, which a node or run input could otherwise fill
    (http_merge refuses that at run time too; refusing it here stops it at every form and API). URL
    userinfo is refused: a credential there would sit outside the secret fields, shown in clear.
    """
    stripped = value.strip()
    head = origins.authority_head(stripped) or stripped
    if "{" in head or "}" in head:
        return "no {placeholder} may sit in the scheme, host or port: the connection fixes where its secrets go"
    try:
        parts = urlsplit(stripped)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return "must be an http(s) URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL"
    if "@" in parts.netloc:
        return "must not contain user:password@; put credentials in the secret fields"
    return None


HTTP = ConnectionType(
    name="http",
    label="HTTP",
    aliases=("dynamiq.connections.Http", "Http"),
    destination_fields=("url",),
    base_url_field="url",
    fields=(
        Field("url", "url", label="Base URL",
              help_text="Fixes the origin credentials may be sent to; required when headers, params or data are set."),
        Field("method", "choice", default="GET", choices=HTTP_METHODS, label="Method"),
        Field("headers", "mapping", default={}, sensitive_values=True, label="Headers",
              help_text="Every value is write-only and cannot be overridden by a node or run input."),
        Field("params", "mapping", default={}, sensitive_values=True, label="Query parameters",
              help_text="Every value is write-only and cannot be overridden by a node or run input."),
        Field("data", "mapping", default={}, sensitive_values=True, label="Body data",
              help_text="Every value is write-only and cannot be overridden by a node or run input."),
        Field("parameters", "list", default=[], label="Parameters",
              help_text="Names a node or run input may fill, e.g. account_id for {account_id} in the URL."),
    ),
)

HTTP_API_KEY = ConnectionType(
    name="http_api_key",
    label="HTTP API key",
    aliases=("dynamiq.connections.HttpApiKey", "HttpApiKey"),
    destination_fields=("url",),
    base_url_field="url",
    fields=(
        Field("url", "url", required=True, label="Base URL"),
        Field("api_key", "string", required=True, secret=True, label="API key"),
        Field("header", "string", default="Authorization", label="Header name"),
        Field("prefix", "string", default="Bearer ", label="Value prefix"),
    ),
)

OPENAI = ConnectionType(
    name="openai",
    label="OpenAI-compatible LLM",
    aliases=("dynamiq.connections.OpenAI", "OpenAI"),
    destination_fields=("base_url",),
    base_url_field="base_url",
    # Every OpenAI-compatible server lists its models; cheap, read-only, and refused without a valid key.
    probe=Probe("GET", "models"),
    fields=(
        Field("api_key", "string", required=True, secret=True, label="API key"),
        Field("base_url", "url", default="https://api.openai.com/v1", label="Base URL"),
        Field("organization", "string", label="Organization"),
    ),
)

OAUTH2 = ConnectionType(
    name="oauth2",
    label="OAuth2 account",
    aliases=("dynamiq.connections.OAuth2", "OAuth2"),
    oauth=True,
    destination_fields=("url",),  # provider_id is fixed by the service
    fields=(
        Field("provider_id", "string", required=True, label="Provider"),
        Field("url", "url", required=True, label="Base URL", help_text="Origin the access token may be sent to."),
        Field("scopes", "list", default=[], label="Scopes"),
        Field("access_token", "string", secret=True, label="Access token"),
        Field("refresh_token", "string", secret=True, label="Refresh token"),
        Field("expires_at", "integer", label="Expires at (epoch seconds)"),
        Field("scope", "string", label="Granted scope"),
        Field("token_type", "string", default="Bearer", label="Token type"),
    ),
)

POSTGRESQL = ConnectionType(
    name="postgresql",
    label="PostgreSQL",
    aliases=("dynamiq.connections.PostgreSQL", "PostgreSQL"),
    destination_fields=("host", "port"),
    fields=(
        Field("host", "string", required=True, label="Host"),
        Field("port", "integer", default=5432, label="Port"),
        Field("database", "string", required=True, label="Database"),
        Field("user", "string", required=True, label="User"),
        Field("password", "string", secret=True, default="", label="Password"),
        Field("sslmode", "choice", default="prefer",
              choices=("disable", "allow", "prefer", "require", "verify-ca", "verify-full"), label="SSL mode"),
    ),
)

REGISTRY: dict[str, ConnectionType] = {t.name: t for t in (HTTP, HTTP_API_KEY, OPENAI, OAUTH2, POSTGRESQL)}
_ALIASES: dict[str, str] = {
    key.lower(): t.name for t in REGISTRY.values() for key in (t.name, *t.aliases)
}

TYPE_CHOICES: tuple[tuple[str, str], ...] = tuple((t.name, t.label) for t in REGISTRY.values())


def canonical_type(name: str) -> str:
    """`dynamiq.connections.Http` -> `http`. Raises ConfigError for an unknown type."""
    canonical = _ALIASES.get(str(name).strip().lower())
    if canonical is None:
        # The given name is not echoed: an answer repeats only the registry's words, never a client's string.
        raise ConfigError({"type": [f"Unknown connection type. Known: {', '.join(REGISTRY)}."]})
    return canonical


def get_type(name: str) -> ConnectionType:
    return REGISTRY[canonical_type(name)]


def _check_value(f: Field, value: Any) -> tuple[Any, str | None]:
    if f.kind in ("string", "url"):
        if not isinstance(value, str):
            return value, "must be a string"
        if f.kind == "url" and value:
            problem = url_problem(value)
            if problem:
                return value, problem
        return value, None
    if f.kind == "integer":
        if isinstance(value, bool):
            return value, "must be an integer"
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        return (value, None) if isinstance(value, int) else (value, "must be an integer")
    if f.kind == "choice":
        if isinstance(value, str) and value.upper() in f.choices:
            return value.upper(), None
        if value in f.choices:
            return value, None
        return value, f"must be one of {', '.join(f.choices)}"
    if f.kind == "mapping":
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            return value, "must be an object with string keys"
        return dict(value), None
    if f.kind == "list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return value, "must be a list of strings"
        return list(value), None
    return value, f"unsupported field kind {f.kind}"


def validate_config(type_name: str, config: Any, *, partial_base: Mapping[str, Any] | None = None) -> dict:
    """Return the normalized config for `type_name` or raise ConfigError with per-field messages.

    `partial_base`: the stored config when updating; secret fields sent blank (or as the mask) keep
    the stored value, so a form or an API client can edit non-secret fields without re-typing secrets.
    """
    ctype = get_type(type_name)
    if not isinstance(config, Mapping):
        raise ConfigError({"config": ["must be an object"]})
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(config) - {f.name for f in ctype.fields})
    if unknown:
        errors["config"] = [f"unknown field(s) for type {ctype.name}: {', '.join(unknown)}"]
    result: dict[str, Any] = {}
    kept: list[str] = []  # secrets carried over from the stored config (sent blank or masked)
    for f in ctype.fields:
        value = config.get(f.name)
        if partial_base is not None and f.secret and value in (None, "", MASK):
            value = partial_base.get(f.name)
            if value not in (None, ""):
                kept.append(f.name)
        if f.sensitive_values and isinstance(value, Mapping):
            stored = (partial_base or {}).get(f.name) or {}
            kept.extend(f"{f.name}.{k}" for k, v in value.items() if v == MASK and k in stored)
            unknown_masked = sorted(k for k, v in value.items() if v == MASK and k not in stored)
            if unknown_masked:
                # The mask stands for "keep the stored value"; stored literally it would be sent upstream.
                errors.setdefault(f.name, []).append(
                    f"no stored value to keep for {', '.join(unknown_masked)}; send the value itself"
                )
            value = {k: (stored.get(k, v) if v == MASK else v) for k, v in value.items()}
        if value is None or (value == "" and f.kind != "string"):
            if f.required and not ctype.oauth:
                errors.setdefault(f.name, []).append("this field is required")
            elif f.default is not None:
                result[f.name] = f.default.copy() if isinstance(f.default, (dict, list)) else f.default
            continue
        if value == "" and f.required and not ctype.oauth:
            errors.setdefault(f.name, []).append("this field is required")
            continue
        value, problem = _check_value(f, value)
        if problem:
            errors.setdefault(f.name, []).append(problem)
        else:
            result[f.name] = value
    if ctype.name == "http":
        for name in result.get("parameters", []):
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                errors.setdefault("parameters", []).append(f"'{name}' is not a valid parameter name")
    if not result.get("url") and "url" not in errors and _carries_credentials(ctype, result):
        # Without a URL the node would choose where the secrets go (SPEC §12).
        errors.setdefault("url", []).append(
            "this field is required: it fixes the origin this connection's credentials may be sent to"
        )
    if ctype.name == "postgresql" and isinstance(result.get("port"), int) and not 0 < result["port"] < 65536:
        errors.setdefault("port", []).append("must be between 1 and 65535")
    if partial_base is not None and kept and not errors:
        # Pinning a destination that was not set narrows where secrets may go; changing one moves them
        # (for URLs, the origin is the destination: a new path on the same server moves nothing).
        moved = [
            name for name in ctype.destination_fields
            if partial_base.get(name) not in (None, "")
            and _destination(ctype, name, result.get(name)) != _destination(ctype, name, partial_base.get(name))
        ]
        if moved:
            for name in kept:
                errors.setdefault(name.split(".")[0], []).append(
                    f"re-enter {name}: {', '.join(moved)} changed, and a stored secret is never sent to a new destination"
                )
    if errors:
        raise ConfigError(errors)
    return result


def _carries_credentials(ctype: ConnectionType, config: Mapping[str, Any]) -> bool:
    if ctype.name in ("http_api_key", "oauth2"):
        return True
    return ctype.name == "http" and any(config.get(f.name) for f in ctype.fields if f.sensitive_values)


def carries_credentials(type_name: str, config: Mapping[str, Any]) -> bool:
    """True when a connection of this type (with this config) sends credentials over HTTP: its `url` fixes where.

    `http`: when it sets any header, param or data value (every one of them is secret). `http_api_key`
    and `oauth2`: always. Other types do not talk HTTP from an http node.
    """
    return _carries_credentials(get_type(type_name), config)


def _destination(ctype: ConnectionType, name: str, value: Any) -> Any:
    field_ = ctype.field(name)
    if field_ is not None and field_.kind == "url" and isinstance(value, str) and value:
        return origins.origin(value)
    return value


def redact_config(type_name: str, config: Mapping[str, Any]) -> dict:
    """The config as it may be shown: secret fields and every header/param/data value become MASK."""
    ctype = get_type(type_name)
    shown: dict[str, Any] = {}
    for key, value in config.items():
        f = ctype.field(key)
        if f is None:
            continue
        if f.secret:
            shown[key] = MASK if value not in (None, "") else ""
        elif f.sensitive_values and isinstance(value, Mapping):
            shown[key] = {k: (MASK if v not in (None, "") else v) for k, v in value.items()}
        else:
            shown[key] = value
    return shown


def secret_values(type_name: str, config: Mapping[str, Any]) -> list[str]:
    """Every secret string in a config: what the engine must mask wherever it could surface."""
    ctype = get_type(type_name)
    found: list[str] = []
    for f in ctype.fields:
        value = config.get(f.name)
        if f.secret and isinstance(value, str) and value:
            found.append(value)
        elif f.sensitive_values and isinstance(value, Mapping):
            found.extend(_leaf_strings(value))
    return found


def _leaf_strings(value: Any) -> list[str]:
    """The strings and numbers inside a mapping value, as text. Booleans and null carry no secret."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        return [str(value)]
    if isinstance(value, Mapping):
        return [text for item in value.values() for text in _leaf_strings(item)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _leaf_strings(item)]
    return []


# Builder-fixed fields (SPEC §13): a requirement's `spec.config` may fix the non-secret fields of its end
# users' connections. OAuth2 connections are filled by the authorization flow: only the origin their token
# may go to is the builder's (provider and scopes have their own spec keys).
_OAUTH_FIXABLE = ("url",)


def fixable_fields(type_name: str) -> tuple[Field, ...]:
    """The fields a requirement may fix: never a secret, nor a mapping whose every value is secret."""
    ctype = get_type(type_name)
    if ctype.oauth:
        return tuple(f for f in ctype.fields if f.name in _OAUTH_FIXABLE)
    return tuple(f for f in ctype.fields if not (f.secret or f.sensitive_values))


def validate_fixed_config(type_name: str, config: Any) -> dict:
    """A requirement's `spec.config`, normalized, or ConfigError keyed by field name.

    Refused: unknown fields, secret fields (a secret belongs to the end user's connection, never to a
    definition), blank values, and values the connection itself would refuse (URL rules included).
    """
    ctype = get_type(type_name)
    if not isinstance(config, Mapping):
        raise ConfigError({"config": ["must be an object"]})
    allowed = {f.name: f for f in fixable_fields(ctype.name)}
    errors: dict[str, list[str]] = {}
    result: dict[str, Any] = {}
    for name, value in config.items():
        f = allowed.get(name)
        if f is None:
            known = ctype.field(name)
            # Unknown names are not echoed (a message repeats only the registry's own words).
            message = (f"{known.name}: a secret field cannot be fixed by the builder, the end user provides it"
                       if known is not None
                       else f"unknown field(s) for type {ctype.name}; fixable: {', '.join(allowed) or 'none'}")
            if message not in errors.get("config", []):
                errors.setdefault("config", []).append(message)
            continue
        if value is None or (value == "" and f.kind != "string"):
            # A string may be fixed empty (`"prefix": ""`: the key goes in the header as is).
            errors[name] = ["may not be blank: leave the field out to let the end user fill it"]
            continue
        checked, problem = _check_value(f, value.strip() if f.kind == "url" and isinstance(value, str) else value)
        if problem:
            errors[name] = [problem]
        else:
            result[name] = checked
    if ctype.name == "postgresql" and isinstance(result.get("port"), int) and not 0 < result["port"] < 65536:
        errors.setdefault("port", []).append("must be between 1 and 65535")
    if errors:
        raise ConfigError(errors)
    return result


def asked_fields(type_name: str, fixed: Mapping[str, Any] | None) -> tuple[Field, ...]:
    """The fields the end user fills: every field of the type except those the requirement fixes."""
    fixed = fixed or {}
    return tuple(f for f in get_type(type_name).fields if f.name not in fixed)
