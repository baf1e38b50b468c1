from __future__ import annotations

import base64
import ipaddress
import logging
import re
import secrets
import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction

from apps.accounts.models import Project
from apps.connections.models import Connection
from apps.connections.signals import LINK_DELETED, emit
from apps.core.actors import actor_label
from apps.core.errors import BadRequest, Conflict, NotFound
from apps.engine.origins import browser_origin, normalize_origin
from apps.workflows.models import WorkflowVersion

from .models import App, Deployment
from .selectors import connection_referrers

logger = logging.getLogger(__name__)

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")


def normalize_origins(origins) -> list[str]:
    """`https://example.com/x` -> `https://example.com`. Raises BadRequest on anything not an origin."""
    if origins is None:
        return []
    if not isinstance(origins, list):
        raise BadRequest("Invalid App.", details={"allowed_redirect_origins": ["must be a list of origins"]})
    result = []
    for origin in origins:
        normalized = normalize_origin(origin)
        if normalized is None:
            raise BadRequest("Invalid App.", details={"allowed_redirect_origins": [f"'{origin}' is not an origin"]})
        result.append(normalized)
    return list(dict.fromkeys(result))


def validate_verifier_url(url) -> str:
    """`connect_verifier_url` (SPEC §13): where the browser goes with `?flow_id=` after completing a connection;
    "" turns verification off. An absolute https URL (http too with ALLOW_PRIVATE_NETWORK_TARGETS, for
    development), without credentials or fragment: the flow ID must reach only the App's own page."""
    if url is None or url == "":
        return ""
    errors = []
    if not isinstance(url, str) or len(url) > 500:
        errors.append("must be a URL of at most 500 characters")
    else:
        try:
            parts = urlsplit(url.strip())
            host = parts.hostname
        except ValueError:
            parts, host = None, None
        schemes = ("https", "http") if settings.ALLOW_PRIVATE_NETWORK_TARGETS else ("https",)
        if parts is None or parts.scheme not in schemes or not host:
            errors.append("must be an absolute " + " or ".join(schemes) + " URL")
        elif parts.username is not None or parts.password is not None or parts.fragment:
            errors.append("must not carry credentials or a fragment")
    if errors:
        raise BadRequest("Invalid App.", details={"connect_verifier_url": errors})
    return url.strip()


def new_callback_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes (the key is the decoded bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


# WHATWG URL parsers (browsers, curl, most proxies) read a host whose last label is a number as IPv4:
# `127.1`, `0x7f.1`, `0177.0.0.1`, `2130706433`. No DNS top-level domain is numeric.
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")


def is_ip_literal(host: str) -> bool:
    """An IP address in any form a resolver or URL parser reads as one (IPv4 in any numeric form, IPv6)."""
    host = (host or "").strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        pass
    return bool(_NUMERIC_LABEL.match(host.rsplit(".", 1)[-1])) or ":" in host


def _is_under(hostname: str, domain: str) -> bool:
    return hostname == domain or hostname.endswith("." + domain)


def validate_hostname(hostname: str, *, own_default: str | None = None) -> str:
    """Normalize a custom hostname (lowercase, no trailing dot) and refuse what must not route to an App.

    Refused (SPEC §12): IP literals, the platform host, its aliases and names under it, and names under
    APPS_DOMAIN other than `own_default` (the App's own `<app-id>.<APPS_DOMAIN>`). Whether the name is
    taken is checked by `_hostname_free`, in the write's transaction.
    """
    if not isinstance(hostname, str):
        raise BadRequest("Invalid App.", details={"hostname": ["must be a string"]})
    hostname = hostname.strip().lower().rstrip(".")
    if is_ip_literal(hostname):
        raise BadRequest("Invalid App.", details={"hostname": ["must be a DNS name, not an IP address"]})
    if not _HOSTNAME.match(hostname):
        raise BadRequest("Invalid App.", details={"hostname": ["must be a DNS name not used by the platform"]})
    if hostname == own_default:
        return hostname
    platform_host = settings.PLATFORM_HOST.lower().rstrip(".")
    aliases = {h.lower().rstrip(".") for h in settings.PLATFORM_HOST_ALIASES}
    if hostname in aliases or _is_under(hostname, platform_host):
        raise BadRequest("Invalid App.", details={"hostname": ["is the platform's own hostname or a name under it"]})
    if _is_under(hostname, settings.APPS_DOMAIN):
        raise BadRequest("Invalid App.", details={"hostname": [
            f"names under {settings.APPS_DOMAIN} are reserved: an App gets its own <app-id>.{settings.APPS_DOMAIN}"
        ]})
    return hostname


BRANDING_FIELDS = ("display_name", "logo_url", "accent_color", "support_url")
_ACCENT_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def validate_branding(values: dict) -> dict:
    """The hosted page's branding (SPEC §13), normalized, or BadRequest per field. Blank clears a field.

    `logo_url` and `support_url` must be https URLs on a plain origin (the page loads the logo under its CSP
    and links the support page from a form that asks for credentials); `accent_color` is `#rrggbb`, the only
    shape that ever reaches the page's one inline style.
    """
    errors: dict[str, list[str]] = {}
    result: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        if not isinstance(value, str):
            errors[name] = ["must be a string"]
            continue
        value = value.strip()
        if name == "display_name":
            if len(value) > 200:
                errors[name] = ["must be at most 200 characters"]
        elif name in ("logo_url", "support_url") and value:
            if len(value) > 500 or not value.lower().startswith("https://") or browser_origin(value) is None:
                errors[name] = ["must be an https URL"]
        elif name == "accent_color" and value:
            if not _ACCENT_COLOR.match(value):
                errors[name] = ["must be a colour as #rrggbb"]
            value = value.lower()
        result[name] = value
    if errors:
        raise BadRequest("Invalid App.", details=errors)
    return result


def _hostname_free(hostname: str, *, app: App | None = None) -> None:
    taken = App.objects.filter(hostname__iexact=hostname)
    if app is not None:
        taken = taken.exclude(pk=app.pk)
    if taken.exists():
        raise Conflict("This hostname is taken.", details={"hostname": [hostname]})


@transaction.atomic
def app_create(
    *,
    project: Project,
    name: str,
    access_type: str = App.AccessType.PRIVATE,
    allowed_redirect_origins: list[str] | None = None,
    hostname: str | None = None,
    allow_anonymous_uploads: bool = False,
    mcp_enabled: bool = False,
    connect_verifier_url: str = "",
    **branding: str,
) -> App:
    """Create an App on `<uuid>.<APPS_DOMAIN>` (or a custom hostname) with a fresh callback signing secret.

    `branding`: any of BRANDING_FIELDS (the hosted connect page's display name, logo, accent colour, support link).
    """
    unknown = set(branding) - set(BRANDING_FIELDS)
    if unknown:
        raise TypeError(f"unexpected arguments: {', '.join(sorted(unknown))}")
    branding = validate_branding(branding)
    name = (name or "").strip()
    if not name:
        raise BadRequest("Invalid App.", details={"name": ["this field is required"]})
    if access_type not in App.AccessType.values:
        raise BadRequest("Invalid App.", details={"access_type": [f"must be one of {', '.join(App.AccessType.values)}"]})
    if App.objects.filter(project=project, name=name).exists():
        raise Conflict("An App with this name already exists in the project.", details={"name": [name]})
    app_id = uuid.uuid4()
    default = f"{app_id}.{settings.APPS_DOMAIN}"
    hostname = validate_hostname(hostname, own_default=default) if hostname else default
    _hostname_free(hostname)
    connect_verifier_url = validate_verifier_url(connect_verifier_url)
    try:
        with transaction.atomic():
            return App.objects.create(
                id=app_id, project=project, name=name, hostname=hostname, access_type=access_type,
                allowed_redirect_origins=normalize_origins(allowed_redirect_origins),
                callback_signing_secret=new_callback_signing_secret(),
                allow_anonymous_uploads=bool(allow_anonymous_uploads),
                mcp_enabled=bool(mcp_enabled),
                connect_verifier_url=connect_verifier_url, **branding,
            )
    except IntegrityError as exc:
        raise Conflict("An App with this name or hostname already exists.") from exc


def app_update(*, app: App, name: str | None = None, access_type: str | None = None,
               allowed_redirect_origins: list[str] | None = None, hostname: str | None = None,
               allow_anonymous_uploads: bool | None = None, connect_verifier_url: str | None = None,
               mcp_enabled: bool | None = None,
               actor=None, **branding: str | None) -> App:
    """Update an App. Who may change `hostname` (an organization-wide key) is the caller's check.
    `branding`: any of BRANDING_FIELDS; None leaves a field as it is, blank clears it."""
    unknown = set(branding) - set(BRANDING_FIELDS)
    if unknown:
        raise TypeError(f"unexpected arguments: {', '.join(sorted(unknown))}")
    fields = []
    for name, value in validate_branding(branding).items():
        setattr(app, name, value)
        fields.append(name)
    previous_hostname = app.hostname
    if hostname is not None:
        hostname = validate_hostname(hostname, own_default=f"{app.id}.{settings.APPS_DOMAIN}")
        if hostname != app.hostname:
            _hostname_free(hostname, app=app)
            app.hostname = hostname
            fields.append("hostname")
    if allow_anonymous_uploads is not None:
        app.allow_anonymous_uploads = bool(allow_anonymous_uploads)
        fields.append("allow_anonymous_uploads")
    if mcp_enabled is not None:
        app.mcp_enabled = bool(mcp_enabled)
        fields.append("mcp_enabled")
    if name is not None:
        if not name.strip():
            raise BadRequest("Invalid App.", details={"name": ["may not be blank"]})
        app.name = name.strip()
        fields.append("name")
    if access_type is not None:
        if access_type not in App.AccessType.values:
            raise BadRequest("Invalid App.", details={"access_type": ["must be private or public"]})
        app.access_type = access_type
        fields.append("access_type")
    if allowed_redirect_origins is not None:
        app.allowed_redirect_origins = normalize_origins(allowed_redirect_origins)
        fields.append("allowed_redirect_origins")
    if connect_verifier_url is not None:
        app.connect_verifier_url = validate_verifier_url(connect_verifier_url)
        fields.append("connect_verifier_url")
    if fields:
        try:
            with transaction.atomic():
                app.save(update_fields=[*fields, "updated_at"])
        except IntegrityError as exc:
            raise Conflict("An App with this name or hostname already exists.") from exc
        if "hostname" in fields:
            # Apps have no change-history table (deployments are their history); the log keeps who moved
            # the App to which name. Hostnames are not secret.
            logger.info("App %s hostname changed from %s to %s by %s", app.pk, previous_hostname, app.hostname,
                        actor_label(actor))
    return app


@transaction.atomic
def deploy(*, app: App, version: WorkflowVersion, actor=None, rolled_back_from: Deployment | None = None) -> Deployment:
    """Make `version` live on `app`. The previous deployment is superseded; history keeps both."""
    if version.workflow.project_id != app.project_id:
        raise NotFound("No such workflow version.")
    locked = App.objects.select_for_update().get(pk=app.pk)
    Deployment.objects.filter(app=locked, status=Deployment.Status.ACTIVE).update(status=Deployment.Status.SUPERSEDED)
    deployment = Deployment.objects.create(
        app=locked, workflow_version=version, created_by=actor_label(actor), rolled_back_from=rolled_back_from
    )
    locked.current_deployment = deployment
    locked.save(update_fields=["current_deployment", "updated_at"])
    app.current_deployment = deployment
    return deployment


NOTHING_TO_ROLL_BACK = "There is no earlier version of this workflow to roll back to."


def rollback_target(*, app: App) -> Deployment | None:
    """The deployment a rollback without `deployment` redeploys: the newest earlier deployment of another version
    of the same workflow (rolling back to the version that is live already would change nothing; SPEC: an earlier
    version of the same workflow). None when there is none. One query (the App's current deployment loaded)."""
    current = app.current_deployment
    if current is None:
        return None
    return (
        app.deployments.filter(created_at__lt=current.created_at,
                               workflow_version__workflow_id=current.workflow_version.workflow_id)
        .exclude(workflow_version_id=current.workflow_version_id)
        .select_related("workflow_version__workflow").order_by("-created_at").first()
    )


@transaction.atomic
def rollback(*, app: App, deployment: Deployment | None = None, actor=None) -> Deployment:
    """Redeploy the version of `deployment`, or of the one before the current deployment (`rollback_target`)."""
    current = app.current_deployment
    if deployment is None:
        if current is None:
            raise Conflict("The App has no deployment to roll back.")
        deployment = rollback_target(app=app)
        if deployment is None:
            raise Conflict(NOTHING_TO_ROLL_BACK)
    elif deployment.app_id != app.id:
        raise NotFound("No such deployment.")
    return deploy(app=app, version=deployment.workflow_version, actor=actor, rolled_back_from=current)


@transaction.atomic
def connection_delete(*, connection: Connection) -> None:
    """Refused (409, listing the referrers) while any saved or deployed workflow version references it.

    Here rather than in connections: the refusal names the versions and Apps holding the connection, which
    live above connections in the layers. The PROTECT foreign key from the version refs backs it up."""
    referrers = connection_referrers(connection=connection)
    if referrers["versions"]:
        raise Conflict("The connection is referenced by workflow versions and cannot be deleted.", details=referrers)
    # An end user's connection takes its link with it (cascade): announced as any unlink is (SPEC 13), once, under
    # the row lock, before the rows go (the receiver reads them).
    if Connection.objects.select_for_update().filter(pk=connection.pk).values_list("pk", flat=True):
        if Connection.objects.filter(pk=connection.pk, link__isnull=False).exists():
            emit(LINK_DELETED, connection_id=connection.pk)
        Connection.objects.filter(pk=connection.pk).delete()
