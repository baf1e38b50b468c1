from __future__ import annotations

from django.db import models

from apps.core.fields import EncryptedJSONField
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


class ConnectFlow(BaseModel):
    """A connection completed by an end user, waiting for the App owner's backend to confirm who they are
    (SPEC §13 user verification). Its UUID (random, 122 bits) is the `flow_id` the browser carries to the
    App's `connect_verifier_url`; only an access key of the App's own scope can confirm it.

    `kind` says what confirming does: `link` turns the flow's `pending_verification` connection active (the
    link is announced only then); `reconnect` swaps `pending_config` into the connection, whose current
    credentials keep serving runs meanwhile. The pending config is encrypted and cleared once the flow ends.
    """

    class Kind(models.TextChoices):
        LINK = "link", "New link"
        RECONNECT = "reconnect", "Reconnect"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for confirmation"
        CONFIRMED = "confirmed", "Confirmed"
        DISCARDED = "discarded", "Discarded"

    app = models.ForeignKey("deployments.App", on_delete=models.CASCADE, related_name="connect_flows")
    user_id = models.CharField(max_length=255)
    requirement = models.ForeignKey("workflows.Requirement", on_delete=models.CASCADE, related_name="+")
    # SET_NULL: a discarded new link deletes its connection, and the flow stays as the record of why.
    connection = models.ForeignKey(
        "connections.Connection", on_delete=models.SET_NULL, null=True, blank=True, related_name="connect_flows"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Reconnect only: the new config, kept apart until confirmed (the connection keeps the current one).
    pending_config = EncryptedJSONField(null=True, blank=True)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # Why it ended: confirmed, user_mismatch, expired, superseded (a newer flow for the same link).
    outcome = models.CharField(max_length=32, blank=True)
    # Discarded flows: whether the grant they carried was revoked upstream (None: nothing to revoke).
    revoked_upstream = models.BooleanField(null=True, blank=True)

    class Meta:
        verbose_name = "connect verification flow"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(kind__in=["link", "reconnect"]), name="connectflow_kind_valid"),
            models.CheckConstraint(condition=models.Q(status__in=["pending", "confirmed", "discarded"]),
                                   name="connectflow_status_valid"),
        ]
        indexes = [
            # The expiry sweep: pending flows by deadline.
            models.Index(fields=["expires_at"], condition=models.Q(status="pending"), name="connectflow_pending_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.user_id} ({self.get_status_display().lower()})"
