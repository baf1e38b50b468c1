"""CSRF protection for the hosted connect page, which is served with `Referrer-Policy: no-referrer`.

Under that policy browsers send `Origin: null` on the page's own form posts (and no Referer), so
Django's Origin check would refuse every legitimate submission. For these views only, `Origin: null`
is accepted when the browser's `Sec-Fetch-Site` header (set by the browser, not by page content, and
unaffected by the referrer policy) says the request came from this same origin; the CSRF token is
then checked as usual. A real foreign origin is still refused, and the session cookie is SameSite=Lax,
so a cross-site form never carries the connect session in the first place.
"""

from __future__ import annotations

import functools

from django.middleware.csrf import CsrfViewMiddleware
from django.utils.decorators import decorator_from_middleware
from django.views.decorators.csrf import csrf_exempt


class NoReferrerCsrfMiddleware(CsrfViewMiddleware):
    def _origin_verified(self, request) -> bool:
        if request.META.get("HTTP_ORIGIN") == "null":
            return request.META.get("HTTP_SEC_FETCH_SITE", "same-origin") == "same-origin"
        return super()._origin_verified(request)


_protect = decorator_from_middleware(NoReferrerCsrfMiddleware)


def csrf_protect_no_referrer(view):
    """Exempt the view from the global CSRF middleware and protect it with the variant above instead."""
    return csrf_exempt(functools.wraps(view)(_protect(view)))
