from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from .models import AccessKey, digest_access_key

# Writing last_used_at on every request would add a write to the hot path; once a minute is enough.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def access_key_authenticate(*, raw_key: str) -> AccessKey | None:
    """The usable key for `raw_key`, or None. One indexed query (+ a throttled last_used_at update)."""
    if not raw_key.startswith("dynamiq_acc_") or len(raw_key) > 200:
        return None
    # Scope checks read project_id/organization_id only; the management API reads key.project (joined here).
    key = AccessKey.objects.select_related("project").filter(digest=digest_access_key(raw_key)).order_by().first()
    if key is None or not key.matches(raw_key):
        return None
    now = timezone.now()
    if not key.is_usable(now):
        return None
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        AccessKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
