"""Platform host URLs. App hosts (and /apps/<id>/) use config/app_urls.py instead."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from apps.core import views as core_views

urlpatterns = [
    path("", core_views.home, name="home"),
    # Answered by apps.core.middleware.ServiceHealthMiddleware on every host; routed here for reverse().
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("internal/", include("apps.credentials.urls")),
    path("", include("apps.connect.urls")),
    path("v1/", include("apps.management_api.urls")),
]

if settings.DEMO_UPSTREAM_ENABLED:
    urlpatterns.append(path("demo-upstream/", include("apps.core.demo_urls")))

handler400 = "apps.core.views.bad_request"
handler404 = "apps.core.error_pages.not_found"  # HTML for browser routes, JSON for the APIs
handler500 = "apps.core.error_pages.server_error"
