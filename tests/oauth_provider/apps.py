from django.apps import AppConfig


class OAuthProviderConfig(AppConfig):
    """A test-only OAuth2 authorization server (django-oauth-toolkit) with a login page."""

    name = "tests.oauth_provider"
    label = "test_oauth_provider"
