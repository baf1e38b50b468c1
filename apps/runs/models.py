from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.core.fields import EncryptedJSONField


class Run(models.Model):
    """One execution of an App's deployed workflow version. Outputs are masked before they are stored."""

    class Status(models.TextChoices):
        CREATED = "created", "Created"
        STARTED = "started", "Started"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    class Mode(models.TextChoices):
        SYNC = "sync", "Synchronous"
        STREAM = "stream", "Stream"
        BACKGROUND = "background", "Background"
        ASYNC = "async", "Async (callbacks)"

    TERMINAL = (Status.COMPLETED, Status.FAILED, Status.CANCELED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey("deployments.App", on_delete=models.CASCADE, related_name="runs")
    deployment = models.ForeignKey(
        "deployments.Deployment", on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    workflow_version = models.ForeignKey("workflows.WorkflowVersion", on_delete=models.PROTECT, related_name="runs")
    user_id = models.CharField(max_length=255, blank=True)
    session_id = models.CharField(max_length=255, blank=True)
    input = models.JSONField(default=dict)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATED)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.SYNC)
    # Per node: {status, error?, connection: {connection_id, owner, user_id, requirement_id}} (never a value).
    nodes = models.JSONField(default=dict, blank=True)
    options = models.JSONField(default=dict, blank=True)
    file_ids = models.JSONField(default=list, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    # SHA-256 of (access key or anonymous, user_id, endpoint): a key is unique per App *and* scope (SPEC.md
    # section 12), so another caller's key never hands back this run.
    idempotency_scope = models.CharField(max_length=64, blank=True)
    # Keyed digest of the request body: the same key in the same scope with another body is a 422.
    request_fingerprint = models.CharField(max_length=64, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Execution attempts: incremented by every claim. An attempt ends the run only while it still holds the
    # claim (status `started` and this attempt number), so a run ends exactly once.
    attempts = models.PositiveIntegerField(default=0)
    # Refreshed by the process executing the run (every RUNS_LEASE_SECONDS / 3); a `started` run whose
    # heartbeat is older than the lease is taken to be orphaned (its process died) and may be claimed again.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # A default, not auto_now_add: a synchronous run is built (created_at) before it starts and saved only
    # after it ended, and auto_now_add would stamp the save time over it (created_at after started_at).
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["created", "started", "completed", "failed", "canceled"]),
                name="run_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(mode__in=["sync", "stream", "background", "async"]), name="run_mode_valid"
            ),
            models.UniqueConstraint(
                fields=["app", "idempotency_scope", "idempotency_key"], condition=~Q(idempotency_key=""),
                name="run_unique_scoped_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(fields=["app", "-created_at"], name="run_app_recent_idx"),
            models.Index(fields=["status"], condition=Q(status__in=["created", "started"]), name="run_pending_idx"),
        ]

    def __str__(self) -> str:
        return f"run {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL


class RunEvent(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    sequence = models.PositiveIntegerField()
    type = models.CharField(max_length=32)
    data = models.JSONField(default=dict)
    timestamp = models.DateTimeField()

    class Meta:
        ordering = ["run", "sequence"]
        constraints = [models.UniqueConstraint(fields=["run", "sequence"], name="runevent_unique_sequence")]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.sequence} {self.type}"


def _upload_path(instance: File, filename: str) -> str:
    return f"apps/{instance.app_id}/{instance.id}"


class File(models.Model):
    """An upload, usable only by runs of the App that received it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey("deployments.App", on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    mime_type = models.CharField(max_length=255)
    file = models.FileField(upload_to=_upload_path)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class CallbackDelivery(models.Model):
    """One callback URL of an async run: delivered once, retried with backoff, or dead."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        DELIVERED = "delivered", "Delivered"
        DEAD = "dead", "Dead"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="callbacks")
    url = models.URLField(max_length=2000)
    # {"type": "bearer", "token": ...} as given by the caller; encrypted, never shown.
    auth = EncryptedJSONField(null=True, blank=True)
    metadata = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The JSON body, fixed at the first attempt: every retry sends these exact bytes (masked run output).
    body = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "callback deliveries"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "retrying", "delivered", "dead"]),
                name="callbackdelivery_status_valid",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=Q(status__in=["pending", "retrying"]), name="callback_pending_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.url} ({self.status})"
