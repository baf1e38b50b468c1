"""Connect API (platform host, connect-token auth) and connect-token minting (App host, access key)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import AccessKeyAuthentication, CanUseApp
from apps.core import log_context
from apps.core.errors import BadRequest
from apps.core.schema import error_responses

from . import examples as ex
from . import selectors, services, verification
from .authentication import ConnectTokenAuthentication, HasConnectToken


def _exact_fields(data, allowed: set[str]) -> dict:
    if not isinstance(data, dict):
        raise BadRequest("Invalid request.", details={"non_field_errors": ["the body must be a JSON object"]})
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise BadRequest(
            f"Unknown field(s): {', '.join(unknown)}.", details={name: ["unknown field"] for name in unknown}
        )
    return data


class StrictCharField(serializers.CharField):
    """A string, and only a string: `42` is not silently turned into `"42"` (user_id is opaque)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ConnectTokenCreateApi(APIView):
    """`POST /v1/connect/tokens` on the App host: a connect token for one of the App's end users."""

    authentication_classes = [AccessKeyAuthentication]
    permission_classes = [CanUseApp]
    rate_limits = {"POST": "connect_tokens"}  # per access key (apps.core.ratelimit)

    class ConnectTokenInputSerializer(serializers.Serializer):
        user_id = StrictCharField(min_length=1, max_length=255, trim_whitespace=False)
        redirect_url = StrictCharField(required=False, allow_blank=True, max_length=2000, trim_whitespace=False)
        reconnect = serializers.BooleanField(
            required=False, default=False,
            help_text="Open the hosted page to replace the credentials of requirements already linked (SPEC §13): "
                      "the current ones keep serving runs until the new ones are complete.",
        )
        expected_account = StrictCharField(
            required=False, allow_blank=True, max_length=255,
            help_text="The upstream account id the end user must link (as the verification or the provider's "
                      "userinfo names it); another account is refused with 422 account_mismatch.",
        )

    class ConnectTokenSerializer(serializers.Serializer):
        token = serializers.CharField()
        url = serializers.CharField()
        expires_at = serializers.DateTimeField()

    @extend_schema(
        tags=["connect"], operation_id="connect_tokens_create", summary="Mint a connect token for an end user",
        request=ConnectTokenInputSerializer, responses={201: ConnectTokenSerializer, **error_responses(400, 401, 403)},
        examples=ex.TOKEN_CREATE,
    )
    def post(self, request):
        data = _exact_fields(request.data, {"user_id", "redirect_url", "reconnect", "expected_account"})
        serializer = self.ConnectTokenInputSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        log_context.bind(user_id=serializer.validated_data["user_id"])
        token, url, expires_at = services.connect_token_create(app=request.app, **serializer.validated_data)
        body = self.ConnectTokenSerializer({"token": token, "url": url, "expires_at": expires_at}).data
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class ConnectMessageSerializer(serializers.Serializer):
    message = serializers.CharField()


class ConnectPendingSerializer(serializers.Serializer):
    message = serializers.CharField()
    flow_id = serializers.UUIDField(help_text="The flow the App's backend confirms: POST /v1/connect/flows/{flow_id}/confirm.")
    verify_url = serializers.CharField(help_text="The App's connect_verifier_url with this flow_id: send the user there.")


class ConnectUnlinkSerializer(serializers.Serializer):
    message = serializers.CharField()
    revoked_upstream = serializers.BooleanField(
        allow_null=True, help_text="True: the provider revoked the grant; false: it refused or was unreachable; "
        "null: nothing to revoke upstream (not OAuth2, or the provider has no revocation URL).",
    )


class _ConnectApi(APIView):
    authentication_classes = [ConnectTokenAuthentication]
    permission_classes = [HasConnectToken]
    # Writes, per connect token; the hosted page's forms count on the same token (apps.core.ratelimit).
    rate_limits = {"POST": "connect", "PUT": "connect", "PATCH": "connect", "DELETE": "connect"}

    def requirement(self, request, requirement_id):
        return selectors.deployed_requirement(app=request.user.app, requirement_id=requirement_id)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response


class RequirementListApi(_ConnectApi):
    """`GET /v1/connect/requirements`: the App's requirements with this user's status."""

    class ConnectRequirementSerializer(serializers.Serializer):
        id = serializers.UUIDField(source="requirement.id")
        type = serializers.CharField(source="requirement.type")
        name = serializers.CharField(source="requirement.name")
        title = serializers.CharField(source="requirement.title")
        description = serializers.CharField(source="requirement.description")
        spec = serializers.JSONField(source="requirement.spec")
        status = serializers.CharField()
        fields = serializers.SerializerMethodField(
            method_name="get_asked_fields",
            help_text="What the end user is asked for: the connection type's fields minus those the builder fixed "
                      "in spec.config (empty for oauth2: the provider's consent fills the connection).")
        account = serializers.JSONField(
            allow_null=True, help_text='The linked account, {"id", "label"}, when known (SPEC §13).')

        @extend_schema_field(serializers.ListField(child=inline_serializer("ConnectAskedField", {
            "name": serializers.CharField(), "label": serializers.CharField(), "kind": serializers.CharField(),
            "required": serializers.BooleanField(), "secret": serializers.BooleanField(),
        })))
        def get_asked_fields(self, st) -> list[dict]:
            return selectors.asked_fields(st.requirement)

    @extend_schema(
        tags=["connect"], operation_id="connect_requirements_list", summary="The App's requirements for this end user",
        responses={200: inline_serializer("ConnectRequirementList", {"data": ConnectRequirementSerializer(many=True)}),
                   **error_responses(401)},
        examples=ex.REQUIREMENTS,
    )
    def get(self, request):
        statuses = selectors.requirement_statuses(app=request.user.app, user_id=request.user.user_id)
        return Response({"data": self.ConnectRequirementSerializer(statuses, many=True).data})


class RequirementCredentialsApi(_ConnectApi):
    """`POST /v1/connect/requirements/{id}/credentials {type, config}`: link an API-key-style connection."""

    class ConnectCredentialsInputSerializer(serializers.Serializer):
        type = StrictCharField()
        config = serializers.DictField()

    @extend_schema(
        tags=["connect"], operation_id="connect_requirements_credentials_create",
        summary="Link credentials for a requirement", request=ConnectCredentialsInputSerializer,
        description="Stores the credentials (201). When the App verifies its users (`connect_verifier_url`), "
                    "they wait for the App's confirmation instead (202, with the flow to confirm); a linked "
                    "requirement keeps serving runs with its current credentials meanwhile. Fields the requirement "
                    "fixes (spec.config) may not be sent (400). The credentials are verified first: 422 "
                    "`credentials_invalid` (the service answered 401/403), `verification_failed` (any other "
                    "failure) or `account_mismatch` (another account than the token's expected_account); nothing "
                    "is stored then.",
        responses={201: ConnectMessageSerializer, 202: ConnectPendingSerializer, **error_responses(
            400, 401, 404, 422,
            _422="`credentials_invalid`, `verification_failed` or `account_mismatch`: nothing was stored.")},
        examples=ex.CREDENTIALS,
    )
    def post(self, request, requirement_id):
        requirement = self.requirement(request, requirement_id)
        serializer = self.ConnectCredentialsInputSerializer(data=_exact_fields(request.data, {"type", "config"}))
        serializer.is_valid(raise_exception=True)
        link = services.end_user_connection_save(
            app=request.user.app, user_id=request.user.user_id, requirement=requirement,
            type=serializer.validated_data["type"], config=serializer.validated_data["config"],
            expected_account=request.auth.expected_account,
        )
        flow = getattr(link, "verification_flow", None)
        if flow is not None:
            return Response({"message": "pending_verification", "flow_id": str(flow.pk),
                             "verify_url": verification.verifier_redirect_url(app=request.user.app, flow=flow)},
                            status=status.HTTP_202_ACCEPTED)
        return Response({"message": "created"}, status=status.HTTP_201_CREATED)


class RequirementAuthorizeApi(_ConnectApi):
    """`POST /v1/connect/requirements/{id}/oauth2/authorize` → `{"data": {"url"}}`."""

    @extend_schema(
        tags=["connect"], operation_id="connect_requirements_oauth2_authorize",
        summary="Start the OAuth2 authorization for a requirement", request=None,
        responses={200: OpenApiResponse(inline_serializer(
            "ConnectAuthorizeEnvelope", {"data": inline_serializer("ConnectAuthorize", {"url": serializers.URLField()})})),
            **error_responses(400, 401, 404)},
        examples=ex.AUTHORIZE,
    )
    def post(self, request, requirement_id):
        requirement = self.requirement(request, requirement_id)
        _exact_fields(request.data or {}, set())
        claims = request.auth
        url = services.end_user_authorize(
            app=request.user.app, user_id=claims.user_id, requirement=requirement, connect_token_id=claims.jti,
            return_to=claims.redirect_url, expected_account=claims.expected_account,
        )
        return Response({"data": {"url": url}})


class RequirementConnectionApi(_ConnectApi):
    """`DELETE /v1/connect/requirements/{id}/connection`: unlink (and revoke upstream when possible)."""

    @extend_schema(
        tags=["connect"], operation_id="connect_requirements_connection_delete",
        summary="Unlink the end user's connection (revoking it upstream where possible)",
        responses={200: ConnectUnlinkSerializer, **error_responses(401, 404)}, examples=ex.UNLINK,
    )
    def delete(self, request, requirement_id):
        requirement = self.requirement(request, requirement_id)
        result = services.end_user_unlink(app=request.user.app, user_id=request.user.user_id, requirement=requirement)
        return Response(result)


class FlowConfirmApi(APIView):
    """`POST /v1/connect/flows/{flow_id}/confirm {"user_id"}` on the App host: the App's backend confirms which
    of its users completed a connection (SPEC §13 user verification)."""

    authentication_classes = [AccessKeyAuthentication]
    permission_classes = [CanUseApp]
    rate_limits = {"POST": "connect_tokens"}  # the App backend's connect calls, per access key

    class FlowConfirmInputSerializer(serializers.Serializer):
        user_id = StrictCharField(min_length=1, max_length=255, trim_whitespace=False,
                                  help_text="The user signed in to your App in the browser that arrived with flow_id.")

    @extend_schema(
        # "app_host": the App-host fuzzing (tests/management_api/test_fuzz_app_host.py) includes it by this tag.
        tags=["app_host", "connect"], operation_id="connect_flows_confirm", summary="Confirm who completed a connect flow",
        description="Within CONNECT_VERIFY_TTL_SECONDS (10 minutes by default) of the flow. The flow's user_id: the "
                    "link goes live, or the reconnect is swapped in. Another user_id: the flow is discarded and "
                    "revoked (422 `user_mismatch`). Expired or already discarded: 409. Another App's flow: 404.",
        request=FlowConfirmInputSerializer,
        responses={200: ConnectMessageSerializer, **error_responses(
            400, 401, 403, 404, 409, 422, _404="No such flow for this App.",
            _409="The flow expired or was already discarded (details.outcome); or confirmed for another user.",
            _422="`user_mismatch`: the flow was started for another user; it is discarded and revoked.")},
        examples=ex.FLOW_CONFIRM,
    )
    def post(self, request, flow_id):
        data = _exact_fields(request.data, {"user_id"})
        serializer = self.FlowConfirmInputSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        log_context.bind(user_id=serializer.validated_data["user_id"])
        verification.flow_confirm(app=request.app, flow_id=flow_id, user_id=serializer.validated_data["user_id"])
        response = Response({"message": "confirmed"})
        response["Cache-Control"] = "no-store"
        return response
