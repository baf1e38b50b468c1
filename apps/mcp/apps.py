from django.apps import AppConfig


class McpConfig(AppConfig):
    """SPEC §14: an App as a Model Context Protocol server. Top layer (beside management_api): it runs Apps
    (runs), mints connect links (connect) and reads deployments; nothing imports it."""

    name = "apps.mcp"
    label = "mcp"
