from __future__ import annotations

from django.db import models

from apps.core.models import BaseModel


class EndUserLink(BaseModel):
    """The connection an end user linked for one requirement of one App: (app, user_id, requirement)."""

    app = models.ForeignKey("deployments.App", on_delete=models.CASCADE, related_name="links")
    user_id = models.CharField(max_length=255)
    requirement = models.ForeignKey("workflows.Requirement", on_delete=models.CASCADE, related_name="links")
    connection = models.OneToOneField("connections.Connection", on_delete=models.CASCADE, related_name="link")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["app", "user_id", "requirement"], name="enduserlink_unique_triple"),
            models.CheckConstraint(condition=~models.Q(user_id=""), name="enduserlink_user_id_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} → {self.requirement.name}"
