from django.apps import AppConfig


class ProxyConfig(AppConfig):
    """The authenticated proxy (SPEC §14): App-host endpoints that call an upstream as an end user. Top layer,
    beside the management API: it uses runs' guarded client and credentials' resolution, and nothing imports it."""

    name = "apps.proxy"
    label = "proxy"
    verbose_name = "Proxy"
