from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db import models

from apps.core.models import BaseModel


class Workflow(BaseModel):
    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="workflows")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="workflow_unique_name_per_project"),
        ]

    def __str__(self) -> str:
        return self.name


class Requirement(BaseModel):
    """An end-user connection requirement: a typed placeholder a node binds to instead of a Connection.

    Its ID is stable across versions, so end-user links survive redeploys of new versions.
    """

    class Type(models.TextChoices):
        CONNECTION = "connection", "Connection"

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="requirements")
    name = models.SlugField(max_length=100)
    type = models.CharField(max_length=32, choices=Type.choices, default=Type.CONNECTION)
    spec = models.JSONField(default=dict)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "name"], name="requirement_unique_name_per_workflow"),
            models.CheckConstraint(condition=models.Q(type="connection"), name="requirement_type_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.name})"

    @property
    def connection_type(self) -> str:
        return self.spec.get("connection_type", "")


class WorkflowVersion(models.Model):
    """An immutable, numbered snapshot of a workflow definition. Never contains a secret."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    description = models.TextField(blank=True)
    created_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    requirements = models.ManyToManyField(Requirement, blank=True, related_name="versions")
    connections = models.ManyToManyField(
        "connections.Connection", through="VersionConnectionRef", blank=True, related_name="workflow_versions"
    )

    class Meta:
        ordering = ["workflow", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"], name="workflowversion_unique_number"),
            models.CheckConstraint(condition=models.Q(number__gte=1), name="workflowversion_number_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.name} v{self.number}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValidationError("Workflow versions are immutable; save a new version instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("Workflow versions are immutable and cannot be deleted.")


class VersionConnectionRef(models.Model):
    """Which shared connections a version references. PROTECT: a referenced connection cannot be deleted."""

    version = models.ForeignKey(WorkflowVersion, on_delete=models.CASCADE, related_name="connection_refs")
    connection = models.ForeignKey("connections.Connection", on_delete=models.PROTECT, related_name="version_refs")

    class Meta:
        verbose_name = "version connection reference"
        constraints = [
            models.UniqueConstraint(fields=["version", "connection"], name="versionconnectionref_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.version_id} → {self.connection_id}"
