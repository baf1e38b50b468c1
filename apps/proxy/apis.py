"""App-host proxy endpoints (SPEC §14): `/v1/proxy/{requirement_name}/{path}` and
`/v1/proxy/connections/{connection_id}/{path}`, methods GET, POST, PUT, PATCH, DELETE. `request.app` is set by
AppHostMiddleware. An access key is always required (public Apps too: a proxied call acts with credentials)."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from apps.accounts.authentication import AccessKeyAuthentication, CanUseApp
from apps.core.errors import ApplicationError, BadRequest

from . import schema as doc
from .selectors import ProxyTarget, connection_target, requirement_target
from .services import CallAudit, ProxyRequest, proxy_open, refused

USER_HEADER = "Connect-User-Id"
METHODS = ("get", "post", "put", "patch", "delete")


class IgnoreAccept(BaseContentNegotiation):
    """The caller's Accept and Content-Type are meant for the upstream: the proxy's own answers are JSON
    whatever they say (DRF would otherwise answer 406 to `Accept: image/png`), and the body is never parsed."""

    def select_parser(self, request, parsers):
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def _user_id(request, *, required: bool) -> str | None:
    from_query = request.query_params.get("user_id")
    from_header = request.headers.get(USER_HEADER)
    if from_query is not None and from_header is not None and from_query != from_header:
        raise BadRequest(f"user_id and {USER_HEADER} name different users.", details={"user_id": ["conflicts with the header"]})
    user_id = from_query if from_query is not None else from_header
    if user_id is None or user_id == "":
        if required:
            raise BadRequest(f"user_id is required (query parameter or {USER_HEADER} header).",
                             details={"user_id": ["this field is required"]})
        return None
    if len(user_id) > 255:
        raise BadRequest("user_id is 1-255 characters.", details={"user_id": ["at most 255 characters"]})
    if "\x00" in user_id:  # PostgreSQL text cannot hold NUL: the resolution's query would fail (a 500)
        raise BadRequest("user_id contains a NUL character.", details={"user_id": ["NUL characters are not allowed"]})
    return user_id


class ProxyApi(APIView):
    authentication_classes = [AccessKeyAuthentication]
    permission_classes = [CanUseApp]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = IgnoreAccept
    http_method_names = list(METHODS)  # no HEAD/OPTIONS: they would not mean the same upstream
    rate_limits = dict.fromkeys((m.upper() for m in METHODS), "proxy")
    requires_user = False

    def target(self, request, **kwargs) -> ProxyTarget:
        raise NotImplementedError

    def proxy(self, request, path: str = "", **kwargs):
        user_id = _user_id(request, required=self.requires_user)
        target = self.target(request, **kwargs)
        proxy_request = ProxyRequest(
            app=request.app, target=target, method=request.method, path=path or "",
            query=request.META.get("QUERY_STRING", ""), headers=request.headers, body=request.body,
            user_id=user_id, access_key_id=str(request.auth.id),
            prefix=f"{getattr(request, 'app_base_path', '')}/v1/proxy/{target.label}",
        )
        audit = CallAudit(proxy_request)
        try:
            answer = proxy_open(request=proxy_request, audit=audit)
        except ApplicationError as exc:
            refused(audit, exc)
            raise
        except Exception:
            audit.finish(status=500, outcome="refused", error_code="internal_error")
            raise
        response = StreamingHttpResponse(answer.body, status=answer.status)
        del response.headers["Content-Type"]  # Django's default (text/html) would stand in for the upstream's
        merged: dict[str, str] = {}
        for name, value in answer.headers:  # a repeated header (Link, Vary...) is one comma-joined field here
            key = next((k for k in merged if k.lower() == name.lower()), name)
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        for name, value in merged.items():
            response.headers[name] = value
        return response


class ProxyRequirementApi(ProxyApi):
    """As an end user: the connection linked for (App, user_id, requirement)."""

    requires_user = True

    def target(self, request, requirement_name: str = "", **kwargs) -> ProxyTarget:
        return requirement_target(app=request.app, name=requirement_name)


class ProxyConnectionApi(ProxyApi):
    """With a shared connection a node of the deployed version references."""

    def target(self, request, connection_id: str = "", **kwargs) -> ProxyTarget:
        return connection_target(app=request.app, connection_id=connection_id)


def _method(view_class, method: str, *, operation_id: str, summary: str, parameters) -> None:
    def handler(self, request, **kwargs):
        return self.proxy(request, **kwargs)

    handler.__name__ = method
    setattr(view_class, method, extend_schema(
        tags=[doc.TAG], operation_id=f"{operation_id}_{method}", summary=f"{summary} ({method.upper()})",
        description=doc.DESCRIPTION, parameters=parameters,
        request=doc.REQUEST if method in ("post", "put", "patch", "delete") else None,
        responses=doc.RESPONSES, examples=doc.examples(method),
    )(handler))


for _name in METHODS:
    _method(ProxyRequirementApi, _name, operation_id="app_proxy_requirement",
            summary="Call the upstream as an end user", parameters=doc.REQUIREMENT_PARAMETERS)
    _method(ProxyConnectionApi, _name, operation_id="app_proxy_connection",
            summary="Call the upstream with a shared connection", parameters=doc.CONNECTION_PARAMETERS)
