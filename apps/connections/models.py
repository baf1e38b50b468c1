from __future__ import annotations

from django.db import models
from django.db.models import Q

from apps.core.fields import EncryptedJSONField
from apps.core.models import BaseModel
from apps.engine import connection_types


class OAuthProvider(BaseModel):
    """An OAuth2 authorization server the platform is registered with (client ID + secret)."""

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="oauth_providers")
    name = models.CharField(max_length=200)
    authorize_url = models.URLField(max_length=500)
    token_url = models.URLField(max_length=500)
    revoke_url = models.URLField(max_length=500, blank=True)
    # Optional (SPEC §13 account identity): read with each new access token to learn whose account it is.
    userinfo_url = models.URLField(max_length=500, blank=True)
    client_id = models.CharField(max_length=500)
    # A JSON string, encrypted; write-only everywhere it is shown.
    client_secret = EncryptedJSONField(default="", blank=True)
    scopes = models.JSONField(default=list, blank=True)
    pkce = models.BooleanField(default=True)

    class Meta:
        verbose_name, verbose_name_plural = "OAuth2 provider", "OAuth2 providers"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="oauthprovider_unique_name_per_project"),
        ]

    def __str__(self) -> str:
        return self.name


class Connection(BaseModel):
    """A named, typed credential set. Name and type are fixed after creation; only config changes."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        INCOMPLETE = "incomplete", "Incomplete (waiting for consent)"
        EXPIRED = "expired", "Expired"
        UNAUTHORIZED = "unauthorized", "Unauthorized"
        # Completed by an end user, waiting for the App owner's confirmation (SPEC §13 user verification).
        PENDING_VERIFICATION = "pending_verification", "Pending verification"

    class Health(models.TextChoices):
        OK = "ok", "OK"
        DEGRADED = "degraded", "Degraded (transient refresh failures)"

    class Owner(models.TextChoices):
        PROJECT = "project", "Project (shared)"
        END_USER = "end_user", "End user"

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="connections")
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=32, choices=connection_types.TYPE_CHOICES)
    config = EncryptedJSONField(default=dict)
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.ACTIVE)
    # SPEC §13 health: `status` says whether the connection may serve runs; `health` whether its upkeep
    # (refresh) is failing transiently. `status_reason` explains the latest change of either (no secret).
    health = models.CharField(max_length=16, choices=Health.choices, default=Health.OK)
    status_reason = models.CharField(max_length=500, blank=True)
    # Consecutive transient refresh failures (the attempt count of `connection.refresh_failed`).
    refresh_failures = models.PositiveIntegerField(default=0)
    last_verified_at = models.DateTimeField(null=True, blank=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    next_refresh_at = models.DateTimeField(null=True, blank=True)
    # The upstream account the credentials belong to: {"id", "label"} (SPEC §13 account identity). Not secret.
    account = models.JSONField(null=True, blank=True)
    # Shared connections: app is null. End-user connections: the App and the caller's opaque user_id.
    app = models.ForeignKey(
        "deployments.App", on_delete=models.CASCADE, null=True, blank=True, related_name="end_user_connections"
    )
    user_id = models.CharField(max_length=255, blank=True)
    provider = models.ForeignKey(
        OAuthProvider, on_delete=models.PROTECT, null=True, blank=True, related_name="connections"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=200, blank=True)
    updated_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"], condition=Q(app__isnull=True), name="connection_unique_shared_name"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["active", "incomplete", "expired", "unauthorized", "pending_verification"]),
                name="connection_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(type__in=list(connection_types.REGISTRY)), name="connection_type_valid"
            ),
            models.CheckConstraint(
                condition=(Q(app__isnull=True) & Q(user_id="")) | (Q(app__isnull=False) & ~Q(user_id="")),
                name="connection_owner_consistent",
            ),
            models.CheckConstraint(condition=Q(health__in=["ok", "degraded"]), name="connection_health_valid"),
        ]
        indexes = [
            models.Index(fields=["app", "user_id"], name="connection_end_user_idx"),
            # The proactive refresh job's scan: only connections that have a next refresh.
            models.Index(fields=["next_refresh_at"], condition=Q(next_refresh_at__isnull=False),
                         name="connection_next_refresh_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.type})"

    @property
    def owner(self) -> str:
        return self.Owner.END_USER if self.app_id else self.Owner.PROJECT

    @property
    def connection_type(self) -> connection_types.ConnectionType:
        return connection_types.get_type(self.type)

    def redacted_config(self) -> dict:
        return connection_types.redact_config(self.type, self.config or {})


class ConnectionConfigChange(models.Model):
    """History of config edits: who, when, which fields, and a keyed fingerprint. Never a value."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="config_changes")
    changed_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=200, blank=True)
    changed_fields = models.JSONField(default=list)
    fingerprint = models.CharField(max_length=32)

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.connection_id} changed by {self.actor or 'unknown'}"


class OAuthState(BaseModel):
    """A pending authorization-code flow. `state` is single-use; only its digest is stored."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="oauth_states")
    state_digest = models.CharField(max_length=128, unique=True)
    code_verifier = EncryptedJSONField()
    redirect_uri = models.URLField(max_length=500)
    # End-user flows: the connect token and, when started on the hosted page, the browser session.
    app = models.ForeignKey("deployments.App", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    user_id = models.CharField(max_length=255, blank=True)
    requirement = models.ForeignKey(
        "workflows.Requirement", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    connect_token_id = models.CharField(max_length=64, blank=True)
    browser_binding = models.CharField(max_length=128, blank=True)
    return_to = models.CharField(max_length=500, blank=True)
    # The connect token's `expected_account` (SPEC §13): the grant is refused when userinfo names another.
    expected_account = models.CharField(max_length=255, blank=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name, verbose_name_plural = "OAuth2 state", "OAuth2 states"
        ordering = ["-created_at"]
