"""OpenAPI examples of the connect API (the App-host connect token and the connect-token API on the platform
host). Data only, referenced by `apis.py`; the token values are placeholders, never real tokens."""

from __future__ import annotations

from apps.core.schema import request_example, response_example

APP_ID = "4d5e6f70-8192-43a4-b5c6-d7e8f9a0b1a7"
REQUIREMENT_ID = "9f8e7d6c-5b4a-4392-8187-6f5e4d3c2b74"

TOKEN_CREATE = [
    request_example("For user-42, returning to your App", {"user_id": "user-42",
                                                           "redirect_url": "https://app.example.com/settings"}),
    request_example("Reconnect user-42's linked accounts", {"user_id": "user-42", "reconnect": True}),
    response_example("A connect token and its hosted page", {
        "token": "<connect token (JWT)>", "url": "http://localhost:8000/connect?token=<connect token>",
        "expires_at": "2025-01-16T14:35:00Z",
    }, status_codes=[201]),
]
REQUIREMENTS = [response_example("One linked, one pending", {"data": [
    {"id": REQUIREMENT_ID, "type": "http_api_key", "name": "billing", "title": "Your billing account",
     "description": "The API key of your billing account.",
     "spec": {"connection_type": "http_api_key", "config": {"url": "https://billing.example.com"}},
     "status": "completed",
     "fields": [{"name": "api_key", "label": "API key", "kind": "string", "required": True, "secret": True},
                {"name": "header", "label": "Header name", "kind": "string", "required": False, "secret": False},
                {"name": "prefix", "label": "Value prefix", "kind": "string", "required": False, "secret": False}],
     "account": {"id": "acct_1042", "label": "ada@example.com"}},
    {"id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c41", "type": "oauth2", "name": "calendar", "title": "Your calendar",
     "description": "", "spec": {"connection_type": "oauth2", "provider_id": "7a1e5c3b-2d4f-4e6a-9b8c-1f0e2d3c4b52",
                                 "scopes": ["calendar:read"], "config": {"url": "https://calendar.example.com"}},
     "status": "pending", "fields": [], "account": None},
]})]
CREDENTIALS = [
    request_example("Link an API key", {"type": "http_api_key",
                                        "config": {"url": "https://billing.example.com", "api_key": "<the user's key>"}}),
    response_example("Linked", {"message": "created"}, status_codes=[201]),
    response_example("Waiting for the App's confirmation (the App has a connect_verifier_url)", {
        "message": "pending_verification", "flow_id": "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a",
        "verify_url": "https://app.example.com/connect/verify?flow_id=3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a",
    }, status_codes=[202]),
    response_example("The service rejected the key", {"error": {
        "code": "credentials_invalid", "message": "The service rejected these credentials. Check them and try again.",
        "details": {"status_code": 401}}}, status_codes=[422]),
]
AUTHORIZE = [response_example("The provider's consent page", {"data": {
    "url": "https://auth.example.com/oauth/authorize?response_type=code&client_id=platform&state=...&"
           "code_challenge=...&code_challenge_method=S256",
}})]
UNLINK = [response_example("Unlinked and revoked upstream", {"message": "unlinked", "revoked_upstream": True})]
FLOW_CONFIRM = [
    request_example("The signed-in user of your App is user-42", {"user_id": "user-42"}),
    response_example("Confirmed: the link is live", {"message": "confirmed"}),
]
