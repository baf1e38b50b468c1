from __future__ import annotations

import uuid

from django.db import models


class CredentialAccess(models.Model):
    """Audit of every credential resolution: who asked, for which run/App/user, which IDs, the outcome.

    Never a secret value.
    """

    class Requester(models.TextChoices):
        IN_PROCESS = "in_process", "In process"
        INTERNAL_API = "internal_api", "Internal API"

    class Outcome(models.TextChoices):
        RESOLVED = "resolved", "Resolved"
        UNSATISFIED = "unsatisfied", "Requirements unsatisfied"
        DENIED = "denied", "Denied"
        ERROR = "error", "Error"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    requester = models.CharField(max_length=32, choices=Requester.choices)
    run_id = models.UUIDField(null=True, blank=True, db_index=True)
    app = models.ForeignKey("deployments.App", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    user_id = models.CharField(max_length=255, blank=True)
    connection_ids = models.JSONField(default=list)
    requirement_ids = models.JSONField(default=list)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "credential accesses"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(outcome__in=["resolved", "unsatisfied", "denied", "error"]),
                name="credentialaccess_outcome_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.requester} {self.outcome} at {self.created_at:%Y-%m-%d %H:%M:%S}"
