"""OpenAPI description of the proxy endpoints (drf-spectacular). The bodies are the upstream's, in and out, so
they are described as any content; the proxy's own answers (errors) are the usual envelope."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from apps.core.schema import ErrorSerializer, error_responses

TAG = "app host"  # the tag of App-host operations (apps.runs.schema.TAG)

DESCRIPTION = (
    "Calls the upstream API of a connection with its credentials applied by the platform; the caller never sees "
    "them. The upstream URL is the connection's fixed origin and base path plus `{path}` and the query string "
    "(minus `user_id`). The method, the other headers and the body are forwarded; `Authorization`, `Cookie`, "
    "`Host`, hop-by-hop headers and `Connect-User-Id` are not. The answer (any status, any content type) is the "
    "upstream's, streamed, with every secret of the connection masked as `********`, without `Set-Cookie`; "
    "redirects are not followed (a `Location` under the same base path is rewritten to the proxy, any other is "
    "dropped). An answer over the size limit (PROXY_MAX_RESPONSE_BYTES) or the time budget is cut: announced by "
    "`Content-Length`, 502 `upstream_too_large`; discovered while streaming, the connection is dropped before the "
    "body ends (a truncated transfer, never a short body that looks complete).\n\n"
    "Paths are refused (400) rather than guessed when they could leave the base path or be read two ways: `.` or "
    "`..` segments (also sent as `%2e%2e`), `//`, backslashes, control characters, and anything still "
    "percent-encoded after one decoding. Authentication: an access key of the App's project or organization, "
    "also on public Apps. One audit row per call. Rate limit scope `proxy`, per access key."
)

_PATH = OpenApiParameter(
    "path", OpenApiTypes.STR, OpenApiParameter.PATH, allow_blank=True,
    description="The path below the connection's base path (may contain `/`; empty for the base path itself, with "
                "the trailing slash: `/v1/proxy/billing/`).",
)
_USER_ID_QUERY = OpenApiParameter(
    "user_id", {"type": "string", "minLength": 1, "maxLength": 255}, OpenApiParameter.QUERY,
    description="The end user whose linked connection is used (or the `Connect-User-Id` header). Removed from the "
                "query string before forwarding.",
)
_USER_ID_HEADER = OpenApiParameter(
    "Connect-User-Id", {"type": "string", "minLength": 1, "maxLength": 255}, OpenApiParameter.HEADER,
    description="The end user, instead of the `user_id` query parameter (never forwarded).",
)
REQUIREMENT_PARAMETERS = [
    OpenApiParameter("requirement_name", OpenApiTypes.STR, OpenApiParameter.PATH,
                     description="The machine name of a requirement the App's deployed version uses."),
    _PATH, _USER_ID_QUERY, _USER_ID_HEADER,
]
CONNECTION_PARAMETERS = [
    OpenApiParameter("connection_id", OpenApiTypes.UUID, OpenApiParameter.PATH,
                     description="A shared connection a node of the App's deployed version references."),
    _PATH,
    OpenApiParameter("user_id", {"type": "string", "minLength": 1, "maxLength": 255}, OpenApiParameter.QUERY,
                     description="Optional: the end user on whose behalf the call is made (recorded in the audit)."),
]

REQUEST = {"application/json": OpenApiTypes.OBJECT, "application/octet-stream": OpenApiTypes.BINARY,
           "*/*": OpenApiTypes.BINARY}

_UPSTREAM = OpenApiResponse(
    OpenApiTypes.ANY,
    description="The upstream's answer, streamed: its status, headers (minus Set-Cookie and hop-by-hop) and body, "
                "secrets masked. Any status the upstream gives is passed on.",
)
RESPONSES = {
    (200, "*/*"): _UPSTREAM,
    **error_responses(400, 401, 403, 404, 409, 413,
                      _400="Invalid request: a refused path, a missing `user_id`, or `target_not_allowed` (the "
                           "connection's host resolves to an address the platform must not reach).",
                      _404="Unknown App, requirement name, or a connection the deployed version does not reference.",
                      _409="`requirements_unsatisfied` (`details.unsatisfied`: link them through a connect token), "
                           "`connection_not_proxyable`, or the App has no deployed version."),
    502: OpenApiResponse(ErrorSerializer, description="`upstream_unreachable`, or `upstream_too_large` (announced by "
                                                      "Content-Length over PROXY_MAX_RESPONSE_BYTES)."),
    504: OpenApiResponse(ErrorSerializer, description="`upstream_timeout`: no answer within the connect/read timeouts."),
}

_UNSATISFIED = {"error": {
    "code": "requirements_unsatisfied",
    "message": "The connection this call needs is not linked for this user. Mint a connect token and send the user to "
               "the hosted connect page.",
    "details": {"unsatisfied": [{"id": "9f8e7d6c-5b4a-4392-8187-6f5e4d3c2b74", "name": "billing",
                                 "title": "Your billing account"}]},
}}


def examples(method: str) -> list[OpenApiExample]:
    found = [
        OpenApiExample("The upstream's answer", value={"invoices": [{"number": "INV-1042", "total": 1280.0}]},
                       response_only=True, status_codes=[200], media_type="*/*"),
        OpenApiExample("Not linked for this user", value=_UNSATISFIED, response_only=True, status_codes=[409]),
    ]
    if method in ("post", "put", "patch"):
        found.append(OpenApiExample("A JSON body, forwarded as sent", value={"status": "paid"}, request_only=True,
                                    media_type="application/json"))
    return found
