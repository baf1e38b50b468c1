from __future__ import annotations

import hashlib
import hmac
import secrets

from django.db import models
from django.utils import timezone

from apps.core.models import BaseModel

ACCESS_KEY_PREFIX = "dynamiq_acc_"
ACCESS_KEY_RANDOM_LENGTH = 64


class Organization(BaseModel):
    name = models.CharField(max_length=200, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Project(BaseModel):
    """The tenant boundary: connections, workflows and Apps never cross it."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["organization__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="project_unique_name_per_org"),
        ]

    def __str__(self) -> str:
        return f"{self.organization.name} / {self.name}"


def digest_access_key(raw_key: str) -> str:
    # 64 random characters carry ~380 bits: a plain SHA-512 cannot be brute-forced, and unlike an
    # HMAC keyed with SECRET_KEY it survives a SECRET_KEY rotation.
    return hashlib.sha512(raw_key.encode()).hexdigest()


class AccessKey(BaseModel):
    """A Bearer key for App-host and management requests. Only its digest and a preview are stored."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="access_keys")
    # Null: organization-wide key (acts in every project of the organization).
    project = models.ForeignKey(Project, on_delete=models.CASCADE, null=True, blank=True, related_name="access_keys")
    name = models.CharField(max_length=200, blank=True)
    digest = models.CharField(max_length=128, unique=True, editable=False)
    preview = models.CharField(max_length=32, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name or 'key'} ({self.preview})"

    @staticmethod
    def generate() -> str:
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        return ACCESS_KEY_PREFIX + "".join(secrets.choice(alphabet) for _ in range(ACCESS_KEY_RANDOM_LENGTH))

    def set_key(self, raw_key: str) -> None:
        self.digest = digest_access_key(raw_key)
        self.preview = f"{raw_key[: len(ACCESS_KEY_PREFIX) + 4]}…{raw_key[-4:]}"

    @property
    def rate_limit_identity(self) -> str:
        """Whose counter a request with this key counts on (apps.core.ratelimit)."""
        return f"key:{self.pk}"

    def matches(self, raw_key: str) -> bool:
        return hmac.compare_digest(self.digest, digest_access_key(raw_key))

    @property
    def is_org_wide(self) -> bool:
        return self.project_id is None

    def is_usable(self, now=None) -> bool:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now

    def can_act_in(self, project: Project) -> bool:
        if self.project_id is not None:
            return self.project_id == project.id
        return self.organization_id == project.organization_id
