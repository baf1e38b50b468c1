"""Management API for connection webhooks (SPEC §13), platform host, access key: endpoints, their deliveries,
the test event, secret rotation and redelivery. Same conventions as apis.py: one view per URL, an object outside
the key's scope is a 404."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response

from apps.webhooks import selectors as webhook_selectors
from apps.webhooks import services as webhook_services
from apps.webhooks.models import WebhookDelivery

from . import serializers as s
from .apis import PAGE_PARAMETERS, PROJECT_FILTER, ManagementAPIView, _choice, _data, _errors, _sort_parameter
from .selectors import _get, project_filter, project_for_write, projects_for_key

TAGS = ["webhooks"]
WEBHOOK_SORT = ["created_at", "updated_at", "url"]
DELIVERY_SORT = ["created_at"]


def _webhook(key, webhook_id):
    return _get(webhook_selectors.webhooks_in(projects=projects_for_key(key=key)).select_related("project"),
                webhook_id, "webhook")


class WebhookListApi(ManagementAPIView):
    @extend_schema(
        tags=TAGS, operation_id="webhooks_list", summary="List webhooks",
        parameters=[PROJECT_FILTER, *PAGE_PARAMETERS, _sort_parameter(WEBHOOK_SORT, "-created_at")],
        responses={200: s.page(s.WebhookSerializer), **_errors(400)},
    )
    def get(self, request):
        projects = project_filter(key=self.key, project_id=request.query_params.get("project_id"))
        return self.list_response(request, webhook_selectors.webhooks_in(projects=projects), s.WebhookSerializer,
                                  sortable=WEBHOOK_SORT, default_sort="-created_at")

    @extend_schema(
        tags=TAGS, operation_id="webhooks_create", summary="Create a webhook",
        description="Events of the project's connections and end-user links are POSTed to `url`, signed the "
                    "Standard Webhooks way with `secret` (shown in this answer only). `app_ids` limits them to "
                    "those Apps of the project.",
        request=s.WebhookCreateSerializer,
        responses={201: s.envelope(s.WebhookCreatedSerializer), **_errors(400)},
    )
    def post(self, request):
        data = dict(self.validated(s.WebhookCreateSerializer, request))
        project = project_for_write(key=self.key, project_id=data.pop("project_id", None))
        endpoint = webhook_services.webhook_create(project=project, **data)
        return _data(s.WebhookCreatedSerializer, endpoint, 201)


class WebhookDetailApi(ManagementAPIView):
    @extend_schema(
        tags=TAGS, operation_id="webhooks_retrieve", summary="Get a webhook",
        responses={200: s.envelope(s.WebhookSerializer), **_errors()},
    )
    def get(self, request, webhook_id):
        return _data(s.WebhookSerializer, _webhook(self.key, webhook_id))

    @extend_schema(
        tags=TAGS, operation_id="webhooks_update", summary="Update a webhook",
        description="Any of `url`, `events`, `app_ids`, `description`, `enabled`. The secret changes only through "
                    "`rotate_secret`.",
        request=s.WebhookUpdateSerializer,
        responses={200: s.envelope(s.WebhookSerializer), **_errors(400)},
    )
    def patch(self, request, webhook_id):
        endpoint = _webhook(self.key, webhook_id)
        data = self.validated(s.WebhookUpdateSerializer, request)
        return _data(s.WebhookSerializer, webhook_services.webhook_update(endpoint=endpoint, **data))

    @extend_schema(
        tags=TAGS, operation_id="webhooks_destroy", summary="Delete a webhook",
        description="Deletes the webhook and its deliveries; deliveries still owed are not sent.",
        responses={204: OpenApiResponse(description="Deleted."), **_errors()},
    )
    def delete(self, request, webhook_id):
        webhook_services.webhook_delete(endpoint=_webhook(self.key, webhook_id))
        return Response(status=204)


class WebhookTestApi(ManagementAPIView):
    @extend_schema(
        tags=TAGS, operation_id="webhooks_test", summary="Send a test event",
        description="Sends a `webhook.test` event to this webhook (whatever it subscribes to), signed and retried "
                    "like any other. The answer is the queued delivery; 409 `webhook_disabled` for a disabled webhook.",
        request=None,
        responses={201: s.envelope(s.WebhookDeliverySerializer), **_errors(409)},
    )
    def post(self, request, webhook_id):
        delivery = webhook_services.webhook_send_test(endpoint=_webhook(self.key, webhook_id))
        return _data(s.WebhookDeliverySerializer, delivery, 201)


class WebhookRotateSecretApi(ManagementAPIView):
    @extend_schema(
        tags=TAGS, operation_id="webhooks_rotate_secret", summary="Rotate the signing secret",
        description="A new `secret`, shown in this answer only; the old one stops signing at once (deliveries still "
                    "owed are signed with the new one at their next attempt).",
        request=None,
        responses={200: s.envelope(s.WebhookCreatedSerializer), **_errors()},
    )
    def post(self, request, webhook_id):
        endpoint = webhook_services.webhook_rotate_secret(endpoint=_webhook(self.key, webhook_id))
        return _data(s.WebhookCreatedSerializer, endpoint)


class WebhookDeliveryListApi(ManagementAPIView):
    @extend_schema(
        tags=TAGS, operation_id="webhook_deliveries_list", summary="List a webhook's deliveries",
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=WebhookDelivery.Status.values),
            *PAGE_PARAMETERS, _sort_parameter(DELIVERY_SORT, "-created_at"),
        ],
        responses={200: s.page(s.WebhookDeliverySerializer), **_errors(400)},
    )
    def get(self, request, webhook_id):
        endpoint = _webhook(self.key, webhook_id)
        status = _choice(request.query_params, "status", WebhookDelivery.Status.values)
        return self.list_response(request, webhook_selectors.deliveries_of(endpoint=endpoint, status=status),
                                  s.WebhookDeliverySerializer, sortable=DELIVERY_SORT, default_sort="-created_at")


class WebhookRedeliverApi(ManagementAPIView):
    @extend_schema(
        tags=TAGS, operation_id="webhook_deliveries_redeliver", summary="Redeliver an event",
        description="Queues a new delivery of the same event (same `event_id`, hence the same `webhook-id`, and the "
                    "same body) to the same webhook, whatever the first one's status; the first keeps its history. "
                    "409 `webhook_disabled` for a disabled webhook.",
        request=None,
        responses={201: s.envelope(s.WebhookDeliverySerializer), **_errors(409)},
    )
    def post(self, request, delivery_id):
        delivery = _get(webhook_selectors.deliveries_in(projects=projects_for_key(key=self.key)), delivery_id,
                        "webhook delivery")
        return _data(s.WebhookDeliverySerializer, webhook_services.webhook_redeliver(delivery=delivery), 201)
