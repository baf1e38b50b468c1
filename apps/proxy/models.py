from __future__ import annotations

import uuid

from django.db import models


class ProxyCall(models.Model):
    """One row per proxied call (SPEC §14): who called what, as whom, and how it ended. Never a secret, never
    a query string (it may carry the caller's own secrets) and never a body."""

    class Outcome(models.TextChoices):
        COMPLETED = "completed", "Completed"  # the upstream's answer was streamed whole (whatever its status)
        REFUSED = "refused", "Refused"  # the proxy answered itself: bad path, unknown target, unsatisfied...
        UPSTREAM_ERROR = "upstream_error", "Upstream error"  # no answer: connection failed, timed out, refused target
        TOO_LARGE = "too_large", "Cut: too large"  # the answer passed PROXY_MAX_RESPONSE_BYTES: the stream was cut
        TIMED_OUT = "timed_out", "Cut: time budget"  # read timeout or total budget while streaming: cut
        CLIENT_GONE = "client_gone", "Client went away"  # the caller stopped reading before the end

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(db_index=True)
    app = models.ForeignKey("deployments.App", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    access_key_id = models.UUIDField(null=True, blank=True)
    user_id = models.CharField(max_length=255, blank=True)
    # What the caller named: a requirement's name, or a connection ID (`connections/<id>`).
    target = models.CharField(max_length=255)
    requirement_id = models.UUIDField(null=True, blank=True)
    connection_id = models.UUIDField(null=True, blank=True)
    method = models.CharField(max_length=8)
    path = models.TextField(blank=True)  # below the base path, as forwarded (no query string)
    status = models.PositiveSmallIntegerField(null=True, blank=True)  # what the caller got (null: no answer)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error_code = models.CharField(max_length=64, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)  # until the upstream's headers
    duration_ms = models.FloatField(null=True, blank=True)  # until the last byte (or the cut)
    bytes_sent = models.BigIntegerField(default=0)
    retried = models.BooleanField(default=False)  # OAuth2: refreshed after a 401 and sent again
    request_id = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["app", "-created_at"], name="proxycall_app_recent")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(outcome__in=["completed", "refused", "upstream_error", "too_large", "timed_out",
                                                "client_gone"]),
                name="proxycall_outcome_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.target}/{self.path} → {self.status or '-'} ({self.outcome})"
