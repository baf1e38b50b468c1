from __future__ import annotations

import hmac
from datetime import timedelta

from django.utils import timezone

from .models import ACCESS_KEY_PREFIX, AccessKey, digest_access_key

# Writing last_used_at on every request would add a write to the hot path; once a minute is enough.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def access_key_digest(raw_key: str) -> str | None:
    """The digest an access key is looked up by; None for what cannot be an access key."""
    if not raw_key.startswith(ACCESS_KEY_PREFIX) or len(raw_key) > 200:
        return None
    return digest_access_key(raw_key)


class KeyLookup:
    """An access-key row already read by the request's routing statement (apps.deployments.selectors.app_route),
    so authentication needs no statement of its own. `key` is None when no key has that digest."""

    __slots__ = ("digest", "key")

    def __init__(self, digest: str, key: AccessKey | None):
        self.digest = digest
        self.key = key


def access_key_authenticate(*, raw_key: str, lookup: KeyLookup | None = None) -> AccessKey | None:
    """The usable key for `raw_key`, or None. One indexed query, or none when `lookup` already holds the row
    for this key's digest (+ a throttled last_used_at update)."""
    digest = access_key_digest(raw_key)
    if digest is None:
        return None
    if lookup is not None and lookup.digest == digest:
        key = lookup.key
    else:
        # Scope checks read project_id/organization_id only; the management API reads key.project (joined here).
        key = AccessKey.objects.select_related("project").filter(digest=digest).order_by().first()
    if key is None or not hmac.compare_digest(key.digest, digest):
        return None
    now = timezone.now()
    if not key.is_usable(now):
        return None
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        AccessKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
