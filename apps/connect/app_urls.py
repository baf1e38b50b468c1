"""App-host URLs of the connect feature: minting connect tokens."""

from django.urls import path

from . import apis

app_name = "connect_app"

urlpatterns = [
    path("v1/connect/tokens", apis.ConnectTokenCreateApi.as_view(), name="token-create"),
]
