"""Platform-host URLs: the connect API (connect-token auth), the hosted connect page, the OAuth2 callback."""

from django.urls import path

from . import apis, views

app_name = "connect"

urlpatterns = [
    path("v1/connect/requirements", apis.RequirementListApi.as_view(), name="requirement-list"),
    path(
        "v1/connect/requirements/<str:requirement_id>/credentials",
        apis.RequirementCredentialsApi.as_view(),
        name="requirement-credentials",
    ),
    path(
        "v1/connect/requirements/<str:requirement_id>/oauth2/authorize",
        apis.RequirementAuthorizeApi.as_view(),
        name="requirement-authorize",
    ),
    path(
        "v1/connect/requirements/<str:requirement_id>/connection",
        apis.RequirementConnectionApi.as_view(),
        name="requirement-connection",
    ),
    path("connect", views.connect_page, name="page"),
    path("connect/requirements/<uuid:requirement_id>/credentials", views.submit_credentials, name="submit-credentials"),
    path("connect/requirements/<uuid:requirement_id>/authorize", views.start_oauth, name="start-oauth"),
    path("connect/requirements/<uuid:requirement_id>/unlink", views.unlink, name="unlink"),
    path("connect/oauth2/callback", views.oauth_callback, name="oauth2-callback"),
]
