"""App-host URLs: served on an App's hostname and at /apps/<app-id>/ on the platform host.

Only the App API lives here: no admin, no management API, no internal credentials API.
"""

from django.urls import include, path

urlpatterns = [
    path("", include("apps.connect.app_urls")),
    path("", include("apps.runs.app_urls")),
    path("", include("apps.mcp.app_urls")),
    path("", include("apps.proxy.app_urls")),
]

handler400 = "apps.core.views.bad_request"
handler404 = "apps.core.views.not_found"
handler500 = "apps.core.views.server_error"
