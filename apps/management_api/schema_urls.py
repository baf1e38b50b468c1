"""The URL configuration the OpenAPI generator reads (never served).

The platform host's URLs minus the internal credentials API (system-only, not a public interface),
plus the App-host API under a marker prefix that `schema.move_app_host_paths` replaces with the App
host's own servers.
"""

from django.urls import include, path

from config.urls import urlpatterns as platform_urlpatterns

APP_HOST_MARKER = "app_host/"

urlpatterns = [
    *(p for p in platform_urlpatterns if not str(p.pattern).startswith("internal/")),
    path(APP_HOST_MARKER, include("config.app_urls")),
]
