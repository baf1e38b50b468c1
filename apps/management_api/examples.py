"""OpenAPI examples of the management API: one story (the demo's invoice bot) told through every resource,
so the IDs in one example are the ones another example points at. Data only; `serializers.py` attaches each
example to its serializer (`apps.core.schema.with_examples`), and every operation that accepts or answers it
shows it. No value here is a real credential: secrets read as the API answers them, `********`.
"""

from __future__ import annotations

from apps.core.schema import request_example, response_example
from apps.engine.connection_types import MASK

PROJECT_ID = "5b0c7d1e-8f8a-4f43-9d55-0d6f6f1c2a10"
CONNECTION_ID = "0e4f2a9c-3b1d-4c55-8a77-6c2d9e1f4b21"
PROVIDER_ID = "7a1e5c3b-2d4f-4e6a-9b8c-1f0e2d3c4b52"
WORKFLOW_ID = "3c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e63"
REQUIREMENT_ID = "9f8e7d6c-5b4a-4392-8187-6f5e4d3c2b74"
VERSION_ID = "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f985"
PREVIOUS_VERSION_ID = "1a2b3c4d-5e6f-4071-8293-a4b5c6d7e896"
APP_ID = "4d5e6f70-8192-43a4-b5c6-d7e8f9a0b1a7"
DEPLOYMENT_ID = "6f708192-a3b4-45c6-97e8-f9a0b1c2d3b8"
ROLLED_BACK_DEPLOYMENT_ID = "8192a3b4-c5d6-47e8-99a0-b1c2d3e4f5c9"
LINK_ID = "a3b4c5d6-e7f8-4901-8b2c-3d4e5f6a7bda"
END_USER_CONNECTION_ID = "b4c5d6e7-f809-4a1b-8c3d-4e5f6a7b8ceb"
CREATED = "2025-01-15T09:30:00Z"
UPDATED = "2025-01-16T14:05:00Z"

DEFINITION = {"nodes": [
    {"id": "input", "type": "input", "fields": {"question": {"type": "string", "required": True}}},
    {"id": "invoices", "type": "http", "depends_on": ["input"], "connection": {"requirement": REQUIREMENT_ID},
     "config": {"method": "GET", "url": "https://billing.example.com/invoices", "params": {"q": "{{ input.question }}"}}},
    {"id": "output", "type": "output", "depends_on": ["invoices"], "fields": {"invoices": "{{ nodes.invoices.output.body }}"}},
]}

# Connections

CONNECTION = response_example("A shared API-key connection", {
    "id": CONNECTION_ID, "name": "billing-api", "type": "http_api_key", "status": "active",
    "config": {"url": "https://billing.example.com", "api_key": MASK},
    "project_id": PROJECT_ID, "owner": {"type": "project", "app_id": None, "user_id": None},
    "expires_at": None, "account": None, "health": "ok", "status_reason": "", "last_verified_at": None,
    "last_refreshed_at": None, "next_refresh_at": None, "created_at": CREATED, "updated_at": UPDATED,
})
CONNECTION_CREATE = request_example("Create an API-key connection", {
    "name": "billing-api", "type": "http_api_key",
    "config": {"url": "https://billing.example.com", "api_key": "<the provider's API key>"},
})
CONNECTION_UPDATE = request_example("Rotate the key (other fields keep their values)", {
    "config": {"url": "https://billing.example.com", "api_key": "<the new API key>"},
})
AUTHORIZATION_URL = response_example("The provider's consent page", {
    "url": "https://auth.example.com/oauth/authorize?response_type=code&client_id=platform&state=...&"
           "code_challenge=...&code_challenge_method=S256",
})

# OAuth2 providers

PROVIDER = response_example("An OAuth2 provider", {
    "id": PROVIDER_ID, "name": "example-oauth", "authorize_url": "https://auth.example.com/oauth/authorize",
    "token_url": "https://auth.example.com/oauth/token", "revoke_url": "https://auth.example.com/oauth/revoke",
    "userinfo_url": "https://auth.example.com/oauth/userinfo",
    "client_id": "platform", "client_secret": MASK, "scopes": ["invoices:read"], "pkce": True,
    "project_id": PROJECT_ID, "created_at": CREATED, "updated_at": UPDATED,
})
PROVIDER_CREATE = request_example("Register a provider", {
    "name": "example-oauth", "authorize_url": "https://auth.example.com/oauth/authorize",
    "token_url": "https://auth.example.com/oauth/token", "revoke_url": "https://auth.example.com/oauth/revoke",
    "client_id": "platform", "client_secret": "<the client secret>", "scopes": ["invoices:read"], "pkce": True,
})
PROVIDER_UPDATE = request_example("Change the scopes", {"scopes": ["invoices:read", "profile"]})

# Workflows, requirements, versions

WORKFLOW = response_example("A workflow", {
    "id": WORKFLOW_ID, "name": "invoices", "description": "Answers questions about the user's invoices.",
    "project_id": PROJECT_ID, "latest_version": 2, "created_at": CREATED, "updated_at": UPDATED,
})
WORKFLOW_CREATE = request_example("Create a workflow", {
    "name": "invoices", "description": "Answers questions about the user's invoices.",
})
REQUIREMENT = response_example("An end-user requirement", {
    "id": REQUIREMENT_ID, "workflow_id": WORKFLOW_ID, "name": "billing", "type": "http_api_key",
    "title": "Your billing account", "description": "The API key of your billing account.",
    "spec": {"connection_type": "http_api_key"}, "created_at": CREATED, "updated_at": UPDATED,
})
REQUIREMENT_CREATE = request_example("Each end user links a billing API key", {
    "name": "billing", "title": "Your billing account", "description": "The API key of your billing account.",
    "spec": {"connection_type": "http_api_key"},
})
REQUIREMENT_CREATE_FIXED = request_example("Only the key is asked, and verified before it is stored", {
    "name": "billing", "title": "Your billing account", "description": "The API key of your billing account.",
    "spec": {"connection_type": "http_api_key",
             "config": {"url": "https://api.billing.example", "header": "X-Api-Key", "prefix": ""},
             "verify": {"method": "GET", "path": "/v1/me", "expect": [200],
                        "account": {"id": "$.id", "label": "$.email"}}},
})
REQUIREMENT_UPDATE = request_example("Retitle it", {"title": "Billing account (read-only key)"})
VERSION = response_example("Version 2", {
    "id": VERSION_ID, "workflow_id": WORKFLOW_ID, "number": 2, "description": "Search invoices by question.",
    "definition": DEFINITION, "requirement_ids": [REQUIREMENT_ID], "created_by": "access_key:dynamiq_acc_ab12…9xyz",
    "created_at": UPDATED,
})
VERSION_CREATE = request_example("Save a definition", {"definition": DEFINITION, "description": "Search invoices by question."})

# Apps, deployments, links

_APP = {
    "id": APP_ID, "name": "Invoice bot", "hostname": f"{APP_ID}.apps.localhost", "access_type": "private",
    "project_id": PROJECT_ID, "allowed_redirect_origins": ["https://app.example.com"],
    "allow_anonymous_uploads": False, "mcp_enabled": False, "connect_verifier_url": "", "display_name": "Invoice bot",
    "logo_url": "https://app.example.com/logo.png", "accent_color": "#3b5bdb", "support_url": "https://app.example.com/help",
    "current_deployment_id": DEPLOYMENT_ID, "workflow_version_id": VERSION_ID,
    "created_at": CREATED, "updated_at": UPDATED,
}
APP = response_example("An App", _APP)
APP_CREATED = response_example("A new App (its signing secret shown this once)", {
    **_APP, "current_deployment_id": None, "workflow_version_id": None,
    "callback_signing_secret": "whsec_<shown once: store it now>",
})
APP_CREATE = request_example("Create a private App", {
    "name": "Invoice bot", "access_type": "private", "allowed_redirect_origins": ["https://app.example.com"],
})
APP_UPDATE = request_example("Allow another redirect origin", {
    "allowed_redirect_origins": ["https://app.example.com", "https://staging.example.com"],
})
DEPLOYMENT = response_example("A deployment", {
    "id": DEPLOYMENT_ID, "app_id": APP_ID, "workflow_version_id": VERSION_ID, "version_number": 2,
    "workflow_id": WORKFLOW_ID, "status": "active", "created_by": "access_key:dynamiq_acc_ab12…9xyz", "rolled_back_from": None,
    "created_at": UPDATED,
})
ROLLBACK_DEPLOYMENT = response_example("A rollback (a new deployment of the earlier version)", {
    "id": ROLLED_BACK_DEPLOYMENT_ID, "app_id": APP_ID, "workflow_version_id": PREVIOUS_VERSION_ID, "version_number": 1,
    "workflow_id": WORKFLOW_ID, "status": "active", "created_by": "access_key:dynamiq_acc_ab12…9xyz",
    "rolled_back_from": DEPLOYMENT_ID, "created_at": UPDATED,
})
DEPLOYMENT_CREATE = request_example("Deploy version 2", {"workflow_version_id": VERSION_ID})
ROLLBACK = request_example("Back to the deployment before the current one", {})
ROLLBACK_TO = request_example("Back to a given deployment", {"deployment_id": DEPLOYMENT_ID})
LINK = response_example("user-42's link", {
    "id": LINK_ID, "app_id": APP_ID, "user_id": "user-42", "requirement_id": REQUIREMENT_ID,
    "connection_id": END_USER_CONNECTION_ID, "status": "active", "health": "ok", "status_reason": "",
    "account": {"id": "acct_1042", "label": "ada@example.com"},
    "last_verified_at": None, "last_refreshed_at": UPDATED, "next_refresh_at": "2025-01-16T14:55:00Z",
    "created_at": CREATED, "updated_at": UPDATED,
})

# Error answers, for operations that answer no body on success

CONNECTION_REFERENCED = response_example("Still referenced", {"error": {
    "code": "conflict", "message": "The connection is referenced by workflow versions and cannot be deleted.",
    "details": {"versions": [{"workflow_id": WORKFLOW_ID, "workflow": "invoices", "version_id": VERSION_ID, "number": 2}],
                "apps": [{"app_id": APP_ID, "app": "Invoice bot"}]},
}}, status_codes=[409])
LINK_NOT_FOUND = response_example("No such link", {"error": {
    "code": "not_found", "message": "Not found.", "details": {},
}}, status_codes=[404])

# Webhooks (SPEC §13)

WEBHOOK_ID = "c5d6e7f8-091a-4b2c-9d3e-4f5a6b7c8dfc"
DELIVERY_ID = "d6e7f809-1a2b-4c3d-8e4f-5a6b7c8d9e0d"
EVENT_ID = "evt_5f0c2a9e7b3d4c1e8a6f2b9d0c7e3a15"

WEBHOOK = response_example("A webhook for two event types of one App", {
    "id": WEBHOOK_ID, "project_id": PROJECT_ID, "url": "https://hooks.example.com/platform",
    "events": ["link.created", "requirement.unsatisfied"], "app_ids": [APP_ID],
    "description": "Invoice bot: tell our backend when a user must reconnect", "enabled": True,
    "created_at": CREATED, "updated_at": UPDATED,
})
WEBHOOK_CREATED = response_example("Created: the signing secret, shown this once", {
    **WEBHOOK.value, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
})
WEBHOOK_CREATE = request_example("Subscribe to two event types of one App", {
    "url": "https://hooks.example.com/platform", "events": ["link.created", "requirement.unsatisfied"],
    "app_ids": [APP_ID], "description": "Invoice bot: tell our backend when a user must reconnect",
})
WEBHOOK_UPDATE = request_example("Subscribe to every event type", {"events": ["*"]})
WEBHOOK_DELIVERY = response_example("A delivered event", {
    "id": DELIVERY_ID, "webhook_id": WEBHOOK_ID, "event_id": EVENT_ID, "event_type": "requirement.unsatisfied",
    "status": "delivered", "attempts": 2, "last_status_code": 200, "last_error": "", "next_attempt_at": None,
    "delivered_at": UPDATED, "redelivery_of": None, "created_at": CREATED,
    "payload": {"type": "requirement.unsatisfied", "id": EVENT_ID, "timestamp": CREATED, "data": {
        "app_id": APP_ID, "user_id": "user-42",
        "requirement": {"id": REQUIREMENT_ID, "name": "billing", "title": "Billing account"},
        "connection_id": END_USER_CONNECTION_ID, "status": "expired", "status_reason": "invalid_grant",
        "account": {"id": "1234", "label": "ada@example.com"}, "cause": "connection.expired",
        "connect_url": "https://platform.example.com/connect?token=eyJ...",
    }},
})
