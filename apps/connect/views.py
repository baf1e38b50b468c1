"""The hosted connect page and the OAuth2 callback (platform host). Plain Django views, no JavaScript.

The connect token is exchanged once (single use: another browser presenting it later gets "already
used"; the browser holding the session may open it again) for a server-side session (HttpOnly, SameSite=Lax cookie) and the
browser is sent to `/connect` without it, so the token is not left in the address bar, the history,
or a Referer header. Every response carries a strict CSP, `Referrer-Policy: no-referrer`,
`X-Frame-Options: DENY` and `Cache-Control: no-store`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import re
import time

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.connections import oauth_flows, oauth_state
from apps.connections.models import OAuthProvider
from apps.core import log_context, ratelimit
from apps.core.errors import ApplicationError, RateLimited
from apps.deployments.selectors import app_by_id
from apps.engine import connection_types, origins

from . import forms, selectors, services, tokens, verification
from .csrf import csrf_protect_no_referrer

logger = logging.getLogger(__name__)

SESSION_KEY = "connect"
JUST_COMPLETED_KEY = "connect_just_completed"
RECONNECTED_KEY = "connect_reconnected"  # requirement IDs reconnected in this session (reconnect mode)
AUTO_RETURN_SECONDS = 3


def _csp(form_origins=(), img_origins=(), style_hashes=()) -> str:
    form_action = " ".join(["'self'", *sorted({o for o in form_origins if o})])
    img_src = " ".join(["'self'", *sorted({o for o in img_origins if o})])
    style_src = " ".join(["'self'", *(f"'sha256-{h}'" for h in sorted(set(style_hashes)))])
    return (
        f"default-src 'none'; style-src {style_src}; img-src {img_src}; "
        f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )


def secured(view):
    """Security headers on every connect page response (views may add provider origins to form-action, the
    App's logo origin to img-src and the hash of the App's one branding `<style>` to style-src)."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = _csp(
            getattr(response, "form_origins", ()), getattr(response, "img_origins", ()),
            getattr(response, "style_hashes", ()),
        )
        response["Referrer-Policy"] = "no-referrer"
        response["X-Frame-Options"] = "DENY"
        response["Cache-Control"] = "no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response

    return wrapper


def _error_page(request, *, title: str, message: str, status: int, app_name: str = "") -> HttpResponse:
    return render(request, "connect/error.html", {"title": title, "message": message, "app_name": app_name}, status=status)


def _rate_limited(request, jti: str) -> HttpResponse | None:
    """Count this request on its connect token's `connect` limit, the one the connect API counts on; over it,
    a 429 page with Retry-After (a browser gets a page, not the API's JSON envelope)."""
    try:
        ratelimit.check("connect", tokens.rate_limit_identity(jti))
    except RateLimited as exc:
        response = _error_page(request, title="Too many attempts",
                               message=f"Please wait {exc.retry_after} seconds, then try again.", status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    return None


class _Context:
    """The connect session: which App and end user this browser acts for."""

    def __init__(self, data: dict, app):
        self.app = app
        self.user_id: str = data["user_id"]
        self.jti: str = data["jti"]
        self.redirect_url: str = data.get("redirect_url") or ""
        self.browser_secret: str = data["browser"]
        self.reconnect: bool = bool(data.get("reconnect"))
        self.expected_account: str = data.get("expected_account") or ""


def _session_context(request) -> _Context | HttpResponse:
    data = request.session.get(SESSION_KEY)
    if not isinstance(data, dict) or "app_id" not in data:
        return _error_page(
            request, title="This page needs a connect link",
            message="Open the link the application gave you to connect your accounts. "
            "Links are personal and can be used for a limited time.",
            status=401,
        )
    if int(data.get("exp", 0)) <= time.time():
        request.session.pop(SESSION_KEY, None)
        return _error_page(
            request, title="This connect link has expired",
            message="For your security, connect links only work for a limited time. "
            "Go back to the application and start again to get a new link.",
            status=401,
        )
    app = app_by_id(app_id=data["app_id"])
    if app is None:
        request.session.pop(SESSION_KEY, None)
        return _error_page(request, title="This application is no longer available",
                           message="The application that sent you here no longer exists.", status=404)
    log_context.bind(app_id=app.pk, user_id=data["user_id"])
    return _Context(data, app)


def _reconnecting(request, ctx: _Context, st, form_errors: dict | None) -> bool:
    """Whether a linked requirement shows its new-credentials form: the user pressed Reconnect on it
    (`?reconnect=<id>`), a reconnect form came back with errors, or the page was opened with a reconnect token
    and this requirement was not reconnected in this session yet."""
    rid = str(st.requirement.id)
    if rid in (form_errors or {}) or request.GET.get("reconnect") == rid:
        return True
    return ctx.reconnect and rid not in request.session.get(RECONNECTED_KEY, [])


_ACCENT = re.compile(r"#[0-9a-fA-F]{6}")


def _darker(color: str) -> str:
    channels = [int(color[i:i + 2], 16) * 85 // 100 for i in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in channels)


def branding(app) -> dict:
    """The App's branding for the hosted page (SPEC §13), re-checked here as stored rows may predate validation.

    The accent colour goes in one small `<style>` element whose SHA-256 the CSP allows (no 'unsafe-inline'):
    only a validated `#rrggbb` ever reaches it. The logo is loaded from its https origin only (img-src)."""
    accent = app.accent_color if _ACCENT.fullmatch(app.accent_color or "") else ""
    style = f":root{{--accent:{accent};--accent-dark:{_darker(accent)}}}" if accent else ""
    logo = app.logo_url if (app.logo_url or "").startswith("https://") and origins.browser_origin(app.logo_url) else ""
    support = (app.support_url if (app.support_url or "").startswith("https://")
               and origins.browser_origin(app.support_url) else "")
    return {
        "name": app.display_name or app.name, "logo_url": logo, "support_url": support, "style": style,
        "style_hash": base64.b64encode(hashlib.sha256(style.encode()).digest()).decode() if style else "",
    }


def _branded(response: HttpResponse, brand: dict) -> HttpResponse:
    if brand["logo_url"]:
        response.img_origins = {origins.origin_text(brand["logo_url"])}
    if brand["style_hash"]:
        response.style_hashes = {brand["style_hash"]}
    return response


def _page(request, ctx: _Context, *, form_errors: dict | None = None, status: int = 200) -> HttpResponse:
    """Render the requirement list. `form_errors`: {requirement_id: (field errors, submitted data, message)}."""
    statuses = selectors.requirement_statuses(app=ctx.app, user_id=ctx.user_id)
    items, provider_origins = [], set()
    if verification.required(ctx.app):
        # CSP form-action also governs where a form's answer may redirect: the verifier, after a submit.
        provider_origins.add(origins.origin_text(ctx.app.connect_verifier_url))
    for st in statuses:
        requirement = st.requirement
        ctype = connection_types.get_type(requirement.connection_type)
        item = {"status": st, "requirement": requirement, "type_label": ctype.label, "oauth": ctype.oauth,
                "id": str(requirement.id), "error": None, "fields": [], "reconnecting": False, "account": st.account}
        if st.completed:
            item["reconnecting"] = _reconnecting(request, ctx, st, form_errors)
        if ctype.oauth:
            provider_origins.add(_provider_origin(ctx.app, requirement))
        elif not st.completed or item["reconnecting"]:
            errors, data, message = (form_errors or {}).get(str(requirement.id), ({}, None, None))
            item["fields"] = forms.credential_fields(
                ctype.name, id_prefix=f"r-{requirement.id}", data=data, errors=errors,
                fixed=(requirement.spec or {}).get("config"),
            )
            item["error"] = message
        items.append(item)
    # A reconnect page is done once every requirement it offers again was reconnected.
    all_complete = bool(items) and all(item["status"].completed and not item["reconnecting"] for item in items)
    just_completed = request.session.pop(JUST_COMPLETED_KEY, False) if all_complete else False
    brand = branding(ctx.app)
    context = {
        "app": ctx.app,
        "brand": brand,
        "items": items,
        "all_complete": all_complete,
        "pending_count": sum(1 for st in statuses if not st.completed),
        "redirect_url": ctx.redirect_url,
        "redirect_origin": origins.origin_text(ctx.redirect_url),
        "auto_return": bool(just_completed and ctx.redirect_url),
        "auto_return_seconds": AUTO_RETURN_SECONDS,
        "reconnect_mode": ctx.reconnect,
    }
    response = render(request, "connect/page.html", context, status=status)
    response.form_origins = provider_origins
    return _branded(response, brand)


def _provider_origin(app, requirement) -> str:
    provider = OAuthProvider.objects.filter(project=app.project_id, id=requirement.spec.get("provider_id")).only(
        "authorize_url"
    ).first()
    return origins.origin_text(provider.authorize_url) if provider else ""


def _mark_if_complete(request, ctx: _Context) -> None:
    statuses = selectors.requirement_statuses(app=ctx.app, user_id=ctx.user_id)
    if statuses and all(st.completed for st in statuses):
        request.session[JUST_COMPLETED_KEY] = True


@require_GET
@secured
def connect_page(request: HttpRequest) -> HttpResponse:
    token = request.GET.get("token")
    if token is not None:
        return _exchange_token(request, token)
    ctx = _session_context(request)
    if isinstance(ctx, HttpResponse):
        return ctx
    return _page(request, ctx)


def _exchange_token(request, token: str) -> HttpResponse:
    try:
        claims = tokens.decode(token)
    except tokens.InvalidConnectToken as exc:
        if exc.expired:
            return _error_page(
                request, title="This connect link has expired",
                message="For your security, connect links only work for a limited time. "
                "Go back to the application and start again to get a new link.",
                status=401,
            )
        return _error_page(
            request, title="This connect link is not valid",
            message="The link may be incomplete or mistyped. Go back to the application and open it again.",
            status=401,
        )
    log_context.bind(app_id=claims.app_id, user_id=claims.user_id)
    limited = _rate_limited(request, claims.jti)
    if limited is not None:
        return limited
    if app_by_id(app_id=claims.app_id) is None:
        return _error_page(request, title="This application is no longer available",
                           message="The application that sent you here no longer exists.", status=404)
    current = request.session.get(SESSION_KEY)
    if isinstance(current, dict) and current.get("jti") == claims.jti:
        # The browser that exchanged this link opens it again: it holds the session already.
        return redirect(reverse("connect:page"))
    if not services.connect_token_claim_for_page(claims=claims):
        return _error_page(
            request, title="This link was already used",
            message="Connect links work once, in the browser that opened them first. "
            "Go back to the application and start again to get a new link.",
            status=410,
        )
    # A fresh session key for a fresh identity (no fixation), then keep the token's claims server-side.
    request.session.cycle_key()
    request.session[SESSION_KEY] = {
        "app_id": claims.app_id,
        "user_id": claims.user_id,
        "jti": claims.jti,
        "redirect_url": claims.redirect_url,
        "expected_account": claims.expected_account,
        "exp": int(claims.expires_at.timestamp()),
        "browser": oauth_state.new_browser_secret(),
        "reconnect": claims.reconnect,
    }
    request.session.pop(JUST_COMPLETED_KEY, None)
    request.session.pop(RECONNECTED_KEY, None)
    request.session.set_expiry(claims.expires_at)
    logger.info("connect link opened: token exchanged for a page session")
    return redirect(reverse("connect:page"))


@secured
@csrf_protect_no_referrer
@require_POST
def submit_credentials(request: HttpRequest, requirement_id) -> HttpResponse:
    ctx = _session_context(request)
    if isinstance(ctx, HttpResponse):
        return ctx
    limited = _rate_limited(request, ctx.jti)
    if limited is not None:
        return limited
    try:
        requirement = selectors.deployed_requirement(app=ctx.app, requirement_id=requirement_id)
    except ApplicationError:
        messages.error(request, "That requirement is no longer part of this application.")
        return redirect(reverse("connect:page"))
    ctype = connection_types.canonical_type(requirement.connection_type)
    if connection_types.get_type(ctype).oauth:
        return redirect(reverse("connect:page"))
    config, errors = forms.parse_credentials(ctype, request.POST)
    link = None
    if not errors:
        try:
            link = services.end_user_connection_save(app=ctx.app, user_id=ctx.user_id, requirement=requirement,
                                                     config=config, expected_account=ctx.expected_account)
        except ApplicationError as exc:
            errors = dict((exc.details or {}).get("config") or {})
            if not errors:
                errors = {"config": [exc.message]}
    if errors:
        field_names = {f.name for f in connection_types.asked_fields(ctype, (requirement.spec or {}).get("config"))}
        general = [m for k, msgs in errors.items() if k not in field_names for m in msgs]
        message = "Please correct the highlighted fields." + (" " + " ".join(general) if general else "")
        return _page(request, ctx, form_errors={str(requirement.id): (errors, request.POST, message)}, status=400)
    return _after_link(request, ctx, requirement=requirement, flow=getattr(link, "verification_flow", None))


def _after_link(request, ctx: _Context, *, requirement, flow) -> HttpResponse:
    """A requirement was linked or reconnected: to the App's verifier when it must confirm, else back to the page."""
    if flow is not None:
        _note_linked(request, ctx, requirement=requirement, mark_complete=False)
        messages.info(request, f"{requirement.title} is waiting for {ctx.app.name} to confirm it is you.")
        return redirect(verification.verifier_redirect_url(app=ctx.app, flow=flow))
    messages.success(request, f"{requirement.title} is connected.")
    _note_linked(request, ctx, requirement=requirement)
    return redirect(reverse("connect:page"))


def _note_linked(request, ctx: _Context, *, requirement, mark_complete: bool = True) -> None:
    """Remember the requirement as done in this session (a reconnect page stops offering it again)."""
    done = request.session.get(RECONNECTED_KEY, [])
    if str(requirement.id) not in done:
        request.session[RECONNECTED_KEY] = [*done, str(requirement.id)]
    if mark_complete:
        _mark_if_complete(request, ctx)


@secured
@csrf_protect_no_referrer
@require_POST
def start_oauth(request: HttpRequest, requirement_id) -> HttpResponse:
    ctx = _session_context(request)
    if isinstance(ctx, HttpResponse):
        return ctx
    limited = _rate_limited(request, ctx.jti)
    if limited is not None:
        return limited
    try:
        requirement = selectors.deployed_requirement(app=ctx.app, requirement_id=requirement_id)
        url = services.end_user_authorize(
            app=ctx.app, user_id=ctx.user_id, requirement=requirement, connect_token_id=ctx.jti,
            browser_binding=oauth_state.browser_binding_digest(ctx.browser_secret), return_to=reverse("connect:page"),
            expected_account=ctx.expected_account,
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(reverse("connect:page"))
    response = redirect(url)
    response.form_origins = {origins.origin_text(url)}
    return response


@secured
@csrf_protect_no_referrer
@require_POST
def unlink(request: HttpRequest, requirement_id) -> HttpResponse:
    ctx = _session_context(request)
    if isinstance(ctx, HttpResponse):
        return ctx
    limited = _rate_limited(request, ctx.jti)
    if limited is not None:
        return limited
    try:
        requirement = selectors.deployed_requirement(app=ctx.app, requirement_id=requirement_id)
        services.end_user_unlink(app=ctx.app, user_id=ctx.user_id, requirement=requirement)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(reverse("connect:page"))
    messages.success(request, f"{requirement.title} is disconnected.")
    return redirect(reverse("connect:page"))


@require_http_methods(["GET"])
@secured
def oauth_callback(request: HttpRequest) -> HttpResponse:
    """`GET /connect/oauth2/callback?code&state` (or `?error&state` when the user declined)."""
    state = request.GET.get("state", "")
    data = request.session.get(SESSION_KEY)
    browser_secret = data.get("browser", "") if isinstance(data, dict) else ""
    binding = oauth_state.browser_binding_digest(browser_secret)
    if request.GET.get("error"):
        try:
            record = oauth_flows.consume_denied_state(state=state, browser_binding=binding)
        except ApplicationError as exc:
            return _callback_error(request, exc.message, in_session=bool(browser_secret))
        return _after_callback(request, record, ok=False)
    try:
        record = services.oauth_authorization_complete(state=state, code=request.GET.get("code", ""), browser_binding=binding)
    except ApplicationError as exc:
        return _callback_error(request, exc.message, in_session=bool(browser_secret))
    return _after_callback(request, record, ok=True)


def _callback_error(request, message: str, *, in_session: bool) -> HttpResponse:
    if in_session:
        messages.error(request, message)
        return redirect(reverse("connect:page"))
    return _error_page(request, title="The connection could not be completed", message=message, status=400)


def _after_callback(request, record, *, ok: bool) -> HttpResponse:
    requirement = record.requirement
    name = requirement.title if requirement is not None else record.connection.name
    flow = getattr(record, "verification_flow", None) if ok else None
    if flow is not None:  # the App confirms who this is first (hosted page and API flows alike)
        if record.browser_binding:
            ctx = _session_context(request)
            if not isinstance(ctx, HttpResponse):
                return _after_link(request, ctx, requirement=requirement, flow=flow)
        return redirect(verification.verifier_redirect_url(app=record.app, flow=flow))
    if record.browser_binding:  # started on the hosted page: back to it, with a message
        if ok:
            messages.success(request, f"{name} is connected.")
            ctx = _session_context(request)
            if not isinstance(ctx, HttpResponse):
                _note_linked(request, ctx, requirement=requirement)
        else:
            messages.error(request, f"{name} was not connected: the authorization was declined.")
        return redirect(record.return_to or reverse("connect:page"))
    if record.return_to:  # the App's redirect_url (API flows) or the admin page (project flows)
        return redirect(record.return_to)
    title = "Connected" if ok else "Not connected"
    message = (f"{name} is connected. You can close this window." if ok
               else f"{name} was not connected: the authorization was declined.")
    return render(request, "connect/done.html", {"title": title, "message": message}, status=200 if ok else 400)
