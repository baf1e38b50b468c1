"""Test URLconf: the platform host's URLs plus the test-only OAuth2 provider under /o/."""

from django.urls import include, path

from config import urls as platform_urls

urlpatterns = [
    path("o/", include("tests.oauth_provider.urls")),
    *platform_urls.urlpatterns,
]

handler404 = platform_urls.handler404
handler500 = platform_urls.handler500
