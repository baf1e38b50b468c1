"""Management API on the platform host, under /v1/ (SPEC.md section 8), plus its schema and docs."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import apis, webhook_apis

app_name = "management"

urlpatterns = [
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="management:schema"), name="docs"),
    path("connections", apis.ConnectionListApi.as_view(), name="connection-list"),
    path("connections/<uuid:connection_id>", apis.ConnectionDetailApi.as_view(), name="connection-detail"),
    path("connections/<uuid:connection_id>/oauth2/authorize", apis.ConnectionAuthorizeApi.as_view(),
         name="connection-authorize"),
    path("oauth2/providers", apis.OAuthProviderListApi.as_view(), name="oauth-provider-list"),
    path("oauth2/providers/<uuid:provider_id>", apis.OAuthProviderDetailApi.as_view(), name="oauth-provider-detail"),
    path("workflows", apis.WorkflowListApi.as_view(), name="workflow-list"),
    path("workflows/<uuid:workflow_id>", apis.WorkflowDetailApi.as_view(), name="workflow-detail"),
    path("workflows/<uuid:workflow_id>/requirements", apis.RequirementListApi.as_view(), name="requirement-list"),
    path("workflows/<uuid:workflow_id>/requirements/<uuid:requirement_id>", apis.RequirementDetailApi.as_view(),
         name="requirement-detail"),
    path("workflows/<uuid:workflow_id>/versions", apis.WorkflowVersionListApi.as_view(), name="version-list"),
    path("workflows/<uuid:workflow_id>/versions/<uuid:version_id>", apis.WorkflowVersionDetailApi.as_view(),
         name="version-detail"),
    path("apps", apis.AppListApi.as_view(), name="app-list"),
    path("apps/<uuid:app_id>", apis.AppDetailApi.as_view(), name="app-detail"),
    path("apps/<uuid:app_id>/deployments", apis.DeploymentListApi.as_view(), name="deployment-list"),
    path("apps/<uuid:app_id>/rollback", apis.RollbackApi.as_view(), name="app-rollback"),
    path("apps/<uuid:app_id>/links", apis.LinkListApi.as_view(), name="link-list"),
    path("apps/<uuid:app_id>/links/<uuid:link_id>", apis.LinkDetailApi.as_view(), name="link-detail"),
    path("webhooks", webhook_apis.WebhookListApi.as_view(), name="webhook-list"),
    path("webhooks/<uuid:webhook_id>", webhook_apis.WebhookDetailApi.as_view(), name="webhook-detail"),
    path("webhooks/<uuid:webhook_id>/test", webhook_apis.WebhookTestApi.as_view(), name="webhook-test"),
    path("webhooks/<uuid:webhook_id>/rotate_secret", webhook_apis.WebhookRotateSecretApi.as_view(),
         name="webhook-rotate-secret"),
    path("webhooks/<uuid:webhook_id>/deliveries", webhook_apis.WebhookDeliveryListApi.as_view(),
         name="webhook-delivery-list"),
    path("webhook_deliveries/<uuid:delivery_id>/redeliver", webhook_apis.WebhookRedeliverApi.as_view(),
         name="webhook-delivery-redeliver"),
]
