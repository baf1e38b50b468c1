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
        verbose_name = "end-user link"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["app", "user_id", "requirement"], name="enduserlink_unique_triple"),
            models.CheckConstraint(condition=~models.Q(user_id=""), name="enduserlink_user_id_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} → {self.requirement.name}"


class UsedConnectToken(models.Model):
    """A connect token (by its `jti`) that a browser exchanged on the hosted page: the page exchange is
    single-use (SPEC §12). The unique `jti` makes the claim one atomic insert on SQLite and PostgreSQL
    alike, across processes; rows are useless once the token expires and are purged then.
    """

    jti = models.CharField(max_length=64, primary_key=True)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-used_at"]

    def __str__(self) -> str:
        return f"connect token {self.jti[:6]}… used at {self.used_at:%Y-%m-%d %H:%M:%S}"
