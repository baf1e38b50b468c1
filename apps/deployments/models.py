from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from apps.core.fields import EncryptedJSONField
from apps.core.models import BaseModel


class App(BaseModel):
    """A deployed workflow with its own hostname, called by API clients with an access key."""

    class AccessType(models.TextChoices):
        PRIVATE = "private", "Private (access key required)"
        PUBLIC = "public", "Public"

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="apps")
    name = models.CharField(max_length=200)
    hostname = models.CharField(max_length=253, unique=True)
    access_type = models.CharField(max_length=16, choices=AccessType.choices, default=AccessType.PRIVATE)
    # Origins (scheme://host[:port]) a connect flow may send the end user back to.
    allowed_redirect_origins = models.JSONField(default=list, blank=True)
    # Signs async-run callbacks (Standard Webhooks). Encrypted: it must be used again, not only verified.
    callback_signing_secret = EncryptedJSONField(default="", blank=True)
    # Public Apps: whether callers without an access key may upload files (SPEC.md section 12). Off by
    # default, as anonymous uploads let anyone fill the App's storage quota.
    allow_anonymous_uploads = models.BooleanField(default=False)
    # Branding of the hosted connect page (SPEC §13). Not secret; logo_url must be https.
    display_name = models.CharField(max_length=200, blank=True)
    logo_url = models.URLField(max_length=500, blank=True)
    accent_color = models.CharField(max_length=7, blank=True)  # "#rrggbb"
    support_url = models.URLField(max_length=500, blank=True)
    # User verification (SPEC §13): when set, a connection completed on the hosted page or through OAuth
    # stays `pending_verification` until the App owner's backend confirms the flow.
    connect_verifier_url = models.URLField(max_length=500, blank=True)
    # SPEC §14: the App is also an MCP server at /mcp on its host (opt-in).
    mcp_enabled = models.BooleanField(default=False)
    # Kept beside Deployment.status so the App-host hot path loads App + deployment + version in one join;
    # both are written together, only by the deploy service.
    current_deployment = models.ForeignKey(
        "Deployment", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="app_unique_name_per_project"),
            models.CheckConstraint(condition=Q(access_type__in=["private", "public"]), name="app_access_type_valid"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_public(self) -> bool:
        return self.access_type == self.AccessType.PUBLIC


class Deployment(models.Model):
    """One deploy of a workflow version to an App. History newest first; rollback adds a new one."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUPERSEDED = "superseded", "Superseded"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="deployments")
    workflow_version = models.ForeignKey(
        "workflows.WorkflowVersion", on_delete=models.PROTECT, related_name="deployments"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    rolled_back_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="rollbacks"
    )
    created_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["app"], condition=Q(status="active"), name="deployment_one_active_per_app"
            ),
            models.CheckConstraint(condition=Q(status__in=["active", "superseded"]), name="deployment_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.app} ← v{self.workflow_version.number}"
