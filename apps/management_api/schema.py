"""OpenAPI: the access-key security scheme and a generator covering both hosts.

The platform host serves the management API (and the connect API); each App host serves the App API.
`PlatformSchemaGenerator` reads both URL configurations into one document: App-host paths are listed
without a prefix and carry their own `servers` (the App's hostname, or the `/apps/<app-id>` alias on
the platform host), as OpenAPI 3 allows per path item.
"""

from __future__ import annotations

import copy

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.generators import SchemaGenerator

from apps.core.schema import document_error_codes
from apps.runs.schema import ClosedRequestSerializer

from .serializers import StrictInputSerializer

APP_HOST_PREFIX = "/app_host"  # see schema_urls.APP_HOST_MARKER
APP_HOST_ALIAS = "/apps/{app_id}"
APP_HOST_TAG = "app host"


class AccessKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.accounts.authentication.AccessKeyAuthentication"
    name = "accessKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An access key: `Authorization: Bearer dynamiq_acc_...`.",
        }


class ConnectTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.connect.authentication.ConnectTokenAuthentication"
    name = "connectToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A connect token (30 minutes by default, at most 24 h; one App and one user), from "
                           "POST /v1/connect/tokens on the App host. "
                           "Accepted only by /v1/connect/*.",
        }


class StreamTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.runs.stream_tokens.StreamTokenAuthentication"
    name = "streamToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": "The token of a `stream_url` (one run, read-only, 10 minutes by default). Accepted only by "
                           "GET /v1/runs/{run_id}/stream.",
        }


class McpSessionScheme(OpenApiAuthenticationExtension):
    target_class = "apps.mcp.authentication.McpAuthentication"  # a string: the top apps do not import each other
    name = "mcpSession"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An MCP session token (`mcp_...`, one App and one end user, at most 1 h) from POST "
                           "/v1/mcp/sessions, or an access key. Accepted only by /mcp.",
        }


def _strict_request_components() -> set[str]:
    found, pending = set(), [StrictInputSerializer, ClosedRequestSerializer]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        name = cls.__name__.removesuffix("Serializer") + "Request"
        found.update((name, "Patched" + name))  # PATCH bodies are named Patched...
    return found


def _forbid_unknown_request_fields(components: dict) -> None:
    """Management and App-host inputs refuse unknown fields (400); say so in the schema, so clients and fuzzers know."""
    strict = _strict_request_components()
    for name, component in components.get("schemas", {}).items():
        if name in strict and component.get("type") == "object":
            component.setdefault("additionalProperties", False)


def _app_host_servers() -> list[dict]:
    scheme = settings.PLATFORM_URL.split("://", 1)[0]
    return [
        {
            "url": scheme + "://{app_hostname}",
            "description": "An App host",
            "variables": {"app_hostname": {"default": f"00000000-0000-0000-0000-000000000000.{settings.APPS_DOMAIN}",
                                           "description": "The App's `hostname` (see GET /v1/apps/{id})."}},
        },
        {
            "url": settings.PLATFORM_URL + "/apps/{app_id}",
            "description": "The same App API on the platform host (for machines without wildcard DNS)",
            "variables": {"app_id": {"default": "00000000-0000-0000-0000-000000000000", "description": "The App's ID."}},
        },
    ]


def move_app_host_paths(schema: dict) -> dict:
    """`/app_host/v1/runs` (how the generator sees the App API) → `/v1/runs` on the App-host servers."""
    paths = schema.get("paths", {})
    moved: dict[str, dict] = {}
    for path in [p for p in paths if p == APP_HOST_PREFIX or p.startswith(APP_HOST_PREFIX + "/")]:
        item = paths.pop(path)
        for operation in item.values():
            operation["tags"] = [APP_HOST_TAG if t == "app_host" else t for t in operation.get("tags", [APP_HOST_TAG])]
        short = path[len(APP_HOST_PREFIX):] or "/"
        moved[short] = {"servers": _app_host_servers(), **item}
    for path, item in moved.items():
        if path in paths:  # a platform path of the same name: list it under the platform alias instead
            alias_parameter = {"name": "app_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
            item = {**item, "servers": [{"url": settings.PLATFORM_URL}], "parameters": [alias_parameter]}
            paths[APP_HOST_ALIAS + path] = item
        else:
            paths[path] = item
    return schema


def _documented(view, method: str) -> bool:
    handler = getattr(view, method.lower(), None)
    return "schema" in (getattr(handler, "kwargs", None) or {})


class PlatformSchemaGenerator(SchemaGenerator):
    """Default generator of the project (SPECTACULAR_SETTINGS["DEFAULT_GENERATOR_CLASS"])."""

    def __init__(self, *args, **kwargs):
        if kwargs.get("urlconf") is None:
            kwargs["urlconf"] = "apps.management_api.schema_urls"
        super().__init__(*args, **kwargs)

    def _get_paths_and_endpoints(self):
        """App-host operations join the document once their view method carries `@extend_schema`.

        An undocumented APIView would only produce a body-less guess (and a generator warning, which
        `check --deploy` and `spectacular --fail-on-warn` turn into failures), so it is left out
        until it is documented. The platform host's views are all taken as they are.
        """
        endpoints = super()._get_paths_and_endpoints()
        return [
            (path, path_regex, method, view) for path, path_regex, method, view in endpoints
            if not path.startswith(APP_HOST_PREFIX + "/") or _documented(view, method)
        ]

    def get_schema(self, request=None, public=False):
        schema = copy.deepcopy(super().get_schema(request=request, public=public))
        schema["servers"] = [{"url": settings.PLATFORM_URL, "description": "Platform host"}]
        _forbid_unknown_request_fields(schema.get("components", {}))
        document_error_codes(schema)
        schema = move_app_host_paths(schema)
        schema["paths"] = dict(sorted(schema["paths"].items()))
        return schema
