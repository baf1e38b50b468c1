"""The test OAuth2 provider as a process apart (standalone_settings.py, URLconf standalone.py).

`python -m tests.oauth_provider.standalone_process CLIENT_ID REDIRECT_URI` migrates its database, registers the
platform as a client and prints a fresh grant (access and refresh token) as JSON;
`gunicorn tests.oauth_provider.standalone_process:application` serves it.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.oauth_provider.standalone_settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402  (after the settings module is named)

application = get_wsgi_application()


def setup(*, client_id: str, redirect_uri: str) -> dict[str, str]:
    """Migrate, register the platform as a confidential client, and grant it tokens for the provider's user."""
    import secrets
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone
    from oauth2_provider.models import AccessToken, RefreshToken

    from tests.oauth_provider.support import register_platform_client

    call_command("migrate", verbosity=0, interactive=False)
    application = register_platform_client(redirect_uri=redirect_uri, client_id=client_id)
    access = AccessToken.objects.create(
        user=application.user, application=application, token=secrets.token_urlsafe(30), scope="read",
        expires=timezone.now() + timedelta(hours=1),
    )
    refresh = RefreshToken.objects.create(
        user=application.user, application=application, token=secrets.token_urlsafe(30), access_token=access,
    )
    return {"access_token": access.token, "refresh_token": refresh.token}


if __name__ == "__main__":
    _, client_id, redirect_uri = sys.argv
    print(json.dumps(setup(client_id=client_id, redirect_uri=redirect_uri)))
