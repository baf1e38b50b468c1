"""App-host URLs of the connect feature: minting connect tokens, confirming connect flows."""

from django.urls import path

from . import apis

app_name = "connect_app"

urlpatterns = [
    path("v1/connect/tokens", apis.ConnectTokenCreateApi.as_view(), name="token-create"),
    path("v1/connect/flows/<str:flow_id>/confirm", apis.FlowConfirmApi.as_view(), name="flow-confirm"),
]
