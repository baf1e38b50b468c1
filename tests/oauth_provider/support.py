"""Helpers to register the platform as a client of the test provider."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from oauth2_provider.models import Application

CLIENT_SECRET = "test-provider-client-secret-0123456789"
PROVIDER_USER = "pat"
PROVIDER_PASSWORD = "pat-password-123"


def register_platform_client(*, redirect_uri: str, client_id: str = "platform-client") -> Application:
    user, _ = get_user_model().objects.get_or_create(username=PROVIDER_USER)
    user.set_password(PROVIDER_PASSWORD)
    user.save()
    return Application.objects.create(
        name="Runtime connection platform", client_id=client_id, client_secret=CLIENT_SECRET, user=user,
        client_type=Application.CLIENT_CONFIDENTIAL, authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=redirect_uri, skip_authorization=False, algorithm="",
    )
