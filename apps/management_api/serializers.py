"""Input and output shapes of the management API (SPEC.md section 8).

Output serializers list every field explicitly: nothing near a secret is ever serialized by default.
Connection configs go through `Connection.redacted_config()`; OAuth2 client secrets and App signing
secrets are write-only (the signing secret is shown once, in the creation answer).
Input serializers refuse unknown fields, so a typo (or `name` in a connection PATCH) is a 400, not a no-op.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.connections.models import Connection
from apps.core.schema import ErrorSerializer, envelope, page, with_examples  # noqa: F401  (re-exported for the views)
from apps.deployments.models import App, Deployment
from apps.engine import connection_types
from apps.engine.connection_types import MASK

from . import examples as ex


class StrictInputSerializer(serializers.Serializer):
    # Unknown top-level fields are a 400 naming them. (A comment, not a docstring: drf-spectacular
    # would copy a docstring into every input schema.)

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)


@with_examples(ex.AUTHORIZATION_URL)
class AuthorizationUrlSerializer(serializers.Serializer):
    url = serializers.URLField()


# Connections


ACCOUNT_HELP = 'The upstream account the credentials belong to, {"id", "label"} (SPEC §13); null when unknown.'


class ConnectionOwnerSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=Connection.Owner.choices)
    app_id = serializers.UUIDField(allow_null=True)
    user_id = serializers.CharField(allow_null=True)


@with_examples(ex.CONNECTION)
class ConnectionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=connection_types.TYPE_CHOICES)
    status = serializers.ChoiceField(choices=Connection.Status.choices)
    config = serializers.SerializerMethodField(
        help_text=f"The stored config; secret fields (and every http header, param and data value) read '{MASK}'."
    )
    project_id = serializers.UUIDField()
    owner = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField(allow_null=True, help_text="OAuth2 access token expiry.")
    # SPEC §13 health (the same five fields on a link, read from its connection).
    health = serializers.ChoiceField(
        choices=Connection.Health.choices,
        help_text="`degraded` while token refreshes fail transiently (retried with backoff; status unchanged).",
    )
    status_reason = serializers.CharField(help_text="Why the status or health last changed; never a secret.")
    last_verified_at = serializers.DateTimeField(
        allow_null=True, help_text="When the credentials last passed a link-time verification.")
    last_refreshed_at = serializers.DateTimeField(allow_null=True, help_text="When OAuth2 tokens were last obtained.")
    next_refresh_at = serializers.DateTimeField(allow_null=True, help_text="When the OAuth2 token is refreshed next.")
    account = serializers.JSONField(allow_null=True, help_text=ACCOUNT_HELP)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(serializers.DictField())
    def get_config(self, connection: Connection) -> dict:
        return connection.redacted_config()

    @extend_schema_field(ConnectionOwnerSerializer)
    def get_owner(self, connection: Connection) -> dict:
        if connection.app_id:
            return {"type": Connection.Owner.END_USER, "app_id": connection.app_id, "user_id": connection.user_id}
        return {"type": Connection.Owner.PROJECT, "app_id": None, "user_id": None}


@with_examples(ex.CONNECTION_CREATE)
class ConnectionCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=200)
    type = serializers.CharField(
        max_length=100,
        help_text=f"One of {', '.join(connection_types.REGISTRY)} (or a seed alias such as dynamiq.connections.Http).",
    )
    config = serializers.DictField(help_text="Fields of the connection type. Secret fields are write-only.")
    project_id = serializers.UUIDField(required=False, help_text="Required with an organization-wide key.")


@with_examples(ex.CONNECTION_UPDATE)
class ConnectionUpdateSerializer(StrictInputSerializer):
    config = serializers.DictField(
        help_text=f"The new config. Secret fields sent blank or as '{MASK}' keep their stored value."
    )

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            fixed = sorted({"name", "type"} & set(data))
            if fixed:
                raise serializers.ValidationError(
                    {name: ["fixed after creation; only config can change"] for name in fixed}
                )
        return super().to_internal_value(data)


# OAuth2 providers


USERINFO_HELP = ("Optional: read with each new access token to learn the account (`sub`|`id`, `email`|`login`|`name`). "
                 "Changing it needs the client secret again, like the other URLs tokens go to.")


@with_examples(ex.PROVIDER)
class OAuthProviderSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    authorize_url = serializers.URLField()
    token_url = serializers.URLField()
    revoke_url = serializers.CharField(allow_blank=True)
    userinfo_url = serializers.CharField(allow_blank=True, help_text=USERINFO_HELP)
    client_id = serializers.CharField()
    client_secret = serializers.SerializerMethodField(help_text=f"Write-only: '{MASK}' when set, '' when not.")
    scopes = serializers.ListField(child=serializers.CharField())
    pkce = serializers.BooleanField()
    project_id = serializers.UUIDField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_client_secret(self, provider) -> str:
        return MASK if provider.client_secret else ""


@with_examples(ex.PROVIDER_CREATE)
class OAuthProviderCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=200)
    authorize_url = serializers.URLField(max_length=500)
    token_url = serializers.URLField(max_length=500)
    revoke_url = serializers.URLField(max_length=500, required=False, allow_blank=True)
    userinfo_url = serializers.URLField(max_length=500, required=False, allow_blank=True, help_text=USERINFO_HELP)
    client_id = serializers.CharField(max_length=500)
    client_secret = serializers.CharField(required=False, allow_blank=True, write_only=True, max_length=2000)
    scopes = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=100)
    pkce = serializers.BooleanField(required=False, default=True)
    project_id = serializers.UUIDField(required=False, help_text="Required with an organization-wide key.")


@with_examples(ex.PROVIDER_UPDATE)
class OAuthProviderUpdateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=200, required=False)
    authorize_url = serializers.URLField(max_length=500, required=False)
    token_url = serializers.URLField(max_length=500, required=False)
    revoke_url = serializers.URLField(max_length=500, required=False, allow_blank=True)
    userinfo_url = serializers.URLField(max_length=500, required=False, allow_blank=True, help_text=USERINFO_HELP)
    client_id = serializers.CharField(max_length=500, required=False)
    client_secret = serializers.CharField(
        required=False, allow_blank=True, write_only=True, max_length=2000,
        help_text=f"Blank or '{MASK}' keeps the stored secret.",
    )
    scopes = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=100)
    pkce = serializers.BooleanField(required=False)


# Workflows, requirements, versions


@with_examples(ex.WORKFLOW)
class WorkflowSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    project_id = serializers.UUIDField()
    latest_version = serializers.IntegerField(
        source="latest_version_number", allow_null=True, help_text="Number of the newest version; null before the first."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


@with_examples(ex.WORKFLOW_CREATE)
class WorkflowCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)
    project_id = serializers.UUIDField(required=False, help_text="Required with an organization-wide key.")


class RequirementSpecSerializer(StrictInputSerializer):
    connection_type = serializers.CharField(max_length=100)
    provider_id = serializers.UUIDField(required=False, help_text="OAuth2 only: the OAuthProvider.")
    scopes = serializers.ListField(child=serializers.CharField(max_length=200), required=False, help_text="OAuth2 only.")
    config = serializers.DictField(
        required=False,
        help_text='Builder-fixed, non-secret fields of the end users\' connections (SPEC §13), e.g. {"url", "header", '
                  '"prefix"} for http_api_key or {"base_url"} for openai; end users are asked only for the rest. '
                  'Required for oauth2: {"url": "https://api.example.com"}, the origin their tokens may be sent to.',
    )
    verify = serializers.JSONField(
        required=False,
        help_text='The link-time probe: {"method": "GET", "path": "/v1/me", "expect": [200], "account": {"id": '
                  '"<json path>", "label": "<json path>"}}, relative to the connection\'s base URL; false skips the '
                  "connection type's default probe (openai: GET models).",
    )


@with_examples(ex.REQUIREMENT)
class RequirementSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    workflow_id = serializers.UUIDField()
    name = serializers.CharField()
    type = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    spec = serializers.DictField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


@with_examples(ex.REQUIREMENT_CREATE, ex.REQUIREMENT_CREATE_FIXED)
class RequirementCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100, help_text="Machine name, unique per workflow.")
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)
    spec = RequirementSpecSerializer()


@with_examples(ex.REQUIREMENT_UPDATE)
class RequirementUpdateSerializer(StrictInputSerializer):
    title = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            fixed = sorted({"name", "type", "spec"} & set(data))
            if fixed:
                raise serializers.ValidationError(
                    {name: ["fixed after creation; only title and description can change"] for name in fixed}
                )
        return super().to_internal_value(data)


@with_examples(ex.VERSION)
class WorkflowVersionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    workflow_id = serializers.UUIDField()
    number = serializers.IntegerField(min_value=1)
    description = serializers.CharField(allow_blank=True)
    definition = serializers.DictField()
    requirement_ids = serializers.SerializerMethodField()
    created_by = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_requirement_ids(self, version) -> list[str]:
        return sorted(str(r.id) for r in version.requirements.all())


@with_examples(ex.VERSION_CREATE)
class WorkflowVersionCreateSerializer(StrictInputSerializer):
    # Any JSON: the definition validator answers with per-field details, which a DictField could not.
    definition = serializers.JSONField(help_text="The workflow definition (SPEC.md section 4).")
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)


# Apps, deployments, links


VERIFIER_URL_HELP = (
    "User verification (SPEC §13): after an end user completes a connection the browser goes to this URL with "
    "`?flow_id=`, and your backend confirms the flow (`POST /v1/connect/flows/{flow_id}/confirm`) before the "
    "connection serves runs. https (http only with ALLOW_PRIVATE_NETWORK_TARGETS); empty turns it off."
)
ANONYMOUS_UPLOADS_HELP = "Public Apps: whether callers without an access key may upload files (default false)."
MCP_ENABLED_HELP = "Whether the App is also an MCP server at /mcp on its host (default false; SPEC §14)."
DISPLAY_NAME_HELP = "The name the hosted connect page shows (blank: the App's name)."
LOGO_URL_HELP = "The hosted connect page's logo: an https URL (blank: none)."
ACCENT_COLOR_HELP = "The hosted connect page's accent colour, #rrggbb (blank: the default)."
SUPPORT_URL_HELP = "A help link on the hosted connect page: an https URL (blank: none)."


class BrandingInputMixin(serializers.Serializer):
    # Checked by apps.deployments.services.validate_branding (the one rule for the API and the admin).
    display_name = serializers.CharField(max_length=200, required=False, allow_blank=True, help_text=DISPLAY_NAME_HELP)
    logo_url = serializers.CharField(max_length=500, required=False, allow_blank=True, help_text=LOGO_URL_HELP)
    accent_color = serializers.CharField(max_length=7, required=False, allow_blank=True, help_text=ACCENT_COLOR_HELP)
    support_url = serializers.CharField(max_length=500, required=False, allow_blank=True, help_text=SUPPORT_URL_HELP)


@with_examples(ex.APP)
class AppSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    hostname = serializers.CharField()
    access_type = serializers.ChoiceField(choices=App.AccessType.choices)
    project_id = serializers.UUIDField()
    allowed_redirect_origins = serializers.ListField(child=serializers.CharField())
    allow_anonymous_uploads = serializers.BooleanField()
    mcp_enabled = serializers.BooleanField()
    connect_verifier_url = serializers.CharField(allow_blank=True)
    display_name = serializers.CharField(allow_blank=True, help_text=DISPLAY_NAME_HELP)
    logo_url = serializers.CharField(allow_blank=True, help_text=LOGO_URL_HELP)
    accent_color = serializers.CharField(allow_blank=True, help_text=ACCENT_COLOR_HELP)
    support_url = serializers.CharField(allow_blank=True, help_text=SUPPORT_URL_HELP)
    current_deployment_id = serializers.UUIDField(allow_null=True)
    workflow_version_id = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(serializers.UUIDField(allow_null=True))
    def get_workflow_version_id(self, app: App):
        deployment = app.current_deployment
        return str(deployment.workflow_version_id) if deployment else None


@with_examples(ex.APP_CREATED)
class AppCreatedSerializer(AppSerializer):
    callback_signing_secret = serializers.CharField(
        help_text="Signs async-run callbacks (Standard Webhooks). Shown in this answer only: store it now."
    )


@with_examples(ex.APP_CREATE)
class AppCreateSerializer(BrandingInputMixin, StrictInputSerializer):
    name = serializers.CharField(max_length=200)
    access_type = serializers.ChoiceField(choices=App.AccessType.choices, required=False, default=App.AccessType.PRIVATE)
    allowed_redirect_origins = serializers.ListField(
        child=serializers.CharField(max_length=500), required=False, default=list, max_length=50
    )
    hostname = serializers.CharField(
        max_length=253, required=False,
        help_text="A custom hostname; default `<app-id>.<APPS_DOMAIN>`. Needs an organization-wide key; IP "
                  "literals, the platform's names and other names under APPS_DOMAIN are refused.",
    )
    project_id = serializers.UUIDField(required=False, help_text="Required with an organization-wide key.")
    allow_anonymous_uploads = serializers.BooleanField(required=False, default=False, help_text=ANONYMOUS_UPLOADS_HELP)
    mcp_enabled = serializers.BooleanField(required=False, default=False, help_text=MCP_ENABLED_HELP)
    connect_verifier_url = serializers.CharField(max_length=500, required=False, allow_blank=True, default="",
                                                 help_text=VERIFIER_URL_HELP)


@with_examples(ex.APP_UPDATE)
class AppUpdateSerializer(BrandingInputMixin, StrictInputSerializer):
    name = serializers.CharField(max_length=200, required=False)
    hostname = serializers.CharField(
        max_length=253, required=False,
        help_text="A new custom hostname (or the App's own `<app-id>.<APPS_DOMAIN>`). Needs an organization-wide key.",
    )
    allow_anonymous_uploads = serializers.BooleanField(required=False, help_text=ANONYMOUS_UPLOADS_HELP)
    mcp_enabled = serializers.BooleanField(required=False, help_text=MCP_ENABLED_HELP)
    access_type = serializers.ChoiceField(choices=App.AccessType.choices, required=False)
    allowed_redirect_origins = serializers.ListField(
        child=serializers.CharField(max_length=500), required=False, max_length=50
    )
    connect_verifier_url = serializers.CharField(max_length=500, required=False, allow_blank=True,
                                                 help_text=VERIFIER_URL_HELP)


@with_examples(ex.DEPLOYMENT, ex.ROLLBACK_DEPLOYMENT)
class DeploymentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    app_id = serializers.UUIDField()
    workflow_version_id = serializers.UUIDField()
    version_number = serializers.IntegerField(source="workflow_version.number")
    workflow_id = serializers.UUIDField(source="workflow_version.workflow_id")
    status = serializers.ChoiceField(choices=Deployment.Status.choices)
    created_by = serializers.CharField(allow_blank=True)
    rolled_back_from = serializers.UUIDField(source="rolled_back_from_id", allow_null=True)
    created_at = serializers.DateTimeField()


@with_examples(ex.DEPLOYMENT_CREATE)
class DeploymentCreateSerializer(StrictInputSerializer):
    workflow_version_id = serializers.UUIDField()


@with_examples(ex.ROLLBACK, ex.ROLLBACK_TO)
class RollbackSerializer(StrictInputSerializer):
    deployment_id = serializers.UUIDField(
        required=False, help_text="Redeploy this deployment's version; default: the one before the current deployment."
    )


@with_examples(ex.LINK)
class LinkSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    app_id = serializers.UUIDField()
    user_id = serializers.CharField()
    requirement_id = serializers.UUIDField()
    connection_id = serializers.UUIDField()
    status = serializers.ChoiceField(source="connection.status", choices=Connection.Status.choices)
    health = serializers.ChoiceField(source="connection.health", choices=Connection.Health.choices)
    status_reason = serializers.CharField(source="connection.status_reason")
    last_verified_at = serializers.DateTimeField(source="connection.last_verified_at", allow_null=True)
    last_refreshed_at = serializers.DateTimeField(source="connection.last_refreshed_at", allow_null=True)
    next_refresh_at = serializers.DateTimeField(source="connection.next_refresh_at", allow_null=True)
    account = serializers.JSONField(source="connection.account", allow_null=True, help_text=ACCOUNT_HELP)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


# Webhooks (SPEC §13)


@with_examples(ex.WEBHOOK)
class WebhookSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    project_id = serializers.UUIDField()
    url = serializers.URLField()
    events = serializers.ListField(child=serializers.CharField())
    app_ids = serializers.ListField(child=serializers.UUIDField(), help_text="Empty: every App and shared connections.")
    description = serializers.CharField(allow_blank=True)
    enabled = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


@with_examples(ex.WEBHOOK_CREATED)
class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(
        help_text="Signs deliveries (Standard Webhooks `whsec_...`). Shown in this answer only: store it now."
    )


WEBHOOK_EVENTS_HELP = (
    "Event types to receive: link.created, link.reconnected, link.deleted, connection.refresh_failed, "
    "connection.expired, connection.unauthorized, connection.recovered, requirement.unsatisfied; or [\"*\"] for all."
)


@with_examples(ex.WEBHOOK_CREATE)
class WebhookCreateSerializer(StrictInputSerializer):
    url = serializers.URLField(max_length=2000, help_text="HTTPS, resolving to a public address.")
    events = serializers.ListField(child=serializers.CharField(max_length=64), min_length=1, max_length=20,
                                   help_text=WEBHOOK_EVENTS_HELP)
    app_ids = serializers.ListField(child=serializers.UUIDField(), required=False, default=list, max_length=100,
                                    help_text="Only these Apps of the project (default: all, and shared connections).")
    description = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)
    enabled = serializers.BooleanField(required=False, default=True)
    project_id = serializers.UUIDField(required=False, help_text="Required with an organization-wide key.")


@with_examples(ex.WEBHOOK_UPDATE)
class WebhookUpdateSerializer(StrictInputSerializer):
    url = serializers.URLField(max_length=2000, required=False)
    events = serializers.ListField(child=serializers.CharField(max_length=64), min_length=1, max_length=20,
                                   required=False, help_text=WEBHOOK_EVENTS_HELP)
    app_ids = serializers.ListField(child=serializers.UUIDField(), required=False, max_length=100)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)


@with_examples(ex.WEBHOOK_DELIVERY)
class WebhookDeliverySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    webhook_id = serializers.UUIDField(source="endpoint_id")
    event_id = serializers.CharField(help_text="Sent as `webhook-id`: the same on every retry and redelivery.")
    event_type = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "retrying", "delivered", "dead"])
    attempts = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField(allow_blank=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    redelivery_of = serializers.UUIDField(source="redelivery_of_id", allow_null=True)
    created_at = serializers.DateTimeField()
    payload = serializers.SerializerMethodField(help_text="The event exactly as sent (never a secret).")

    @extend_schema_field(serializers.DictField())
    def get_payload(self, delivery) -> dict:
        return json.loads(delivery.body)
