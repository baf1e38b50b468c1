"""Retention of used connect tokens: a row only serves to refuse a second exchange of a token that is still
within its lifetime; once the token has expired its `exp` refuses it anyway, and the row goes. The page
exchange purges expired rows on its way (services.connect_token_claim_for_page); this job catches the rest
when nobody exchanges tokens for a while. No setting: the token's own expiry is the period."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from apps.core.retention import delete_in_batches

from .models import UsedConnectToken


def used_connect_tokens_purge_expired(*, now: datetime | None = None, dry_run: bool = False) -> dict[str, int]:
    """Delete the rows of used connect tokens that have expired; `dry_run` only counts them. Returns {"connect_tokens"}."""
    rows = UsedConnectToken.objects.filter(expires_at__lte=now or timezone.now()).order_by("expires_at")
    if dry_run:
        return {"connect_tokens": rows.count()}
    return {"connect_tokens": delete_in_batches(rows).get(UsedConnectToken._meta.label, 0)}
