from django.urls import path

from . import apis

app_name = "credentials"

urlpatterns = [
    path("v1/credentials/resolve", apis.ResolveApi.as_view(), name="resolve"),
    path("v1/credentials/unauthorized", apis.UnauthorizedApi.as_view(), name="unauthorized"),
]
