import functools

from django.contrib.auth import views as auth_views
from django.urls import include, path
from oauth2_provider import urls as dot_urls

from .views import UserInfoView


def _referrer_policy(view):
    """The platform sends `Referrer-Policy: no-referrer` everywhere; a real provider is its own site with its
    own policy (under no-referrer, Chromium's `Origin: null` would fail Django's CSRF check on its forms)."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Referrer-Policy"] = "strict-origin-when-cross-origin"
        return response

    return wrapper


_login = _referrer_policy(auth_views.LoginView.as_view(template_name="test_oauth_provider/login.html"))
_dot = [
    path(str(p.pattern), _referrer_policy(p.callback), name=p.name) if hasattr(p, "callback") else p
    for p in dot_urls.base_urlpatterns
]

urlpatterns = [
    path("login/", _login, name="provider-login"),
    path("userinfo/", UserInfoView.as_view(), name="provider-userinfo"),
    path("", include((_dot, "oauth2_provider"), namespace="oauth2_provider")),
]
