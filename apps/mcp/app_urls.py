"""App-host URLs of MCP (SPEC §14): the endpoint and session-token minting."""

from django.urls import path

from . import apis

app_name = "mcp"

urlpatterns = [
    path("mcp", apis.McpApi.as_view(), name="endpoint"),
    path("v1/mcp/sessions", apis.McpSessionCreateApi.as_view(), name="session-create"),
]
