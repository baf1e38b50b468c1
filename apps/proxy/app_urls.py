from django.urls import path, register_converter

from . import apis


class AnyPath:
    """Like Django's `path` converter, but also matches the empty string (the base path itself)."""

    regex = ".*"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AnyPath, "proxypath")

# The connections route first: a requirement named `connections` is reached by its name only when what follows
# is not a UUID (docs/decisions.md "Proxy").
urlpatterns = [
    path("v1/proxy/connections/<uuid:connection_id>/<proxypath:path>", apis.ProxyConnectionApi.as_view(),
         name="proxy-connection"),
    path("v1/proxy/<str:requirement_name>/<proxypath:path>", apis.ProxyRequirementApi.as_view(), name="proxy-requirement"),
]
