from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from apps.core.fields import EncryptedJSONField
from apps.core.models import BaseModel


class WebhookEndpoint(BaseModel):
    """Where a project's connection lifecycle events are sent (SPEC §13 "Webhooks")."""

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=2000)
    # Event types subscribed to (apps.connections.signals.EVENT_TYPES), or ["*"] for every type, new ones too.
    events = models.JSONField(default=list)
    # App IDs (strings) whose events are sent; empty: every App of the project, and shared connections.
    # A list, not a many-to-many: deleting a filtered App must not widen the filter to "every App".
    app_ids = models.JSONField(default=list, blank=True)
    description = models.CharField(max_length=500, blank=True)
    # Signs deliveries (Standard Webhooks `whsec_...`). Encrypted: it must be used again, not only verified;
    # shown only in the create and rotate answers.
    secret = EncryptedJSONField()
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return self.url

    def wants(self, *, event_type: str, app_id: str | None) -> bool:
        """Whether this endpoint subscribes to `event_type` for `app_id` (None: a shared connection)."""
        if "*" not in self.events and event_type not in self.events:
            return False
        return not self.app_ids or (app_id is not None and app_id in self.app_ids)


class WebhookDelivery(models.Model):
    """One event sent to one endpoint: delivered once, retried with backoff, or dead. The body is fixed when the
    event happens, so every retry (and a redelivery) sends the same bytes."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        DELIVERED = "delivered", "Delivered"
        DEAD = "dead", "Dead"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    # `evt_...`: the same for every endpoint the event went to and for every redelivery; sent as `webhook-id`.
    event_id = models.CharField(max_length=64, db_index=True)
    event_type = models.CharField(max_length=64)
    body = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # The delivery this one redelivers (POST /v1/webhook_deliveries/{id}/redeliver), if any.
    redelivery_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "retrying", "delivered", "dead"]), name="webhookdelivery_status_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status__in=["pending", "retrying"]),
                         name="webhookdelivery_due_idx"),
            models.Index(fields=["endpoint", "-created_at"], name="webhookdelivery_endpoint_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} → {self.endpoint_id}"
