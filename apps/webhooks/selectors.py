"""Reads of the webhooks app. Scoping to an access key's projects is the caller's (the management API passes the
projects queryset it allows)."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import WebhookDelivery, WebhookEndpoint


def webhooks_in(*, projects: QuerySet) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(project__in=projects)


def deliveries_of(*, endpoint: WebhookEndpoint, status: str | None = None) -> QuerySet[WebhookDelivery]:
    queryset = WebhookDelivery.objects.filter(endpoint=endpoint)
    return queryset.filter(status=status) if status else queryset


def deliveries_in(*, projects: QuerySet) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.select_related("endpoint").filter(endpoint__project__in=projects)
