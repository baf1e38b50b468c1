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
from . import selectors, services
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
        data = _exact_fields(request.data, {"user_id", "redirect_url", "expected_account"})
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
        responses={201: ConnectMessageSerializer, **error_responses(
            400, 401, 404, 422,
            _422="`credentials_invalid`, `verification_failed` or `account_mismatch`: nothing was stored.")},
        examples=ex.CREDENTIALS,
        description="Fields the requirement fixes (spec.config) may not be sent (400). The credentials are verified "
                    "first: 422 `credentials_invalid` (the service answered 401/403), `verification_failed` (any "
                    "other failure) or `account_mismatch` (another account than the token's expected_account); "
                    "nothing is stored then.",
    )
    def post(self, request, requirement_id):
        requirement = self.requirement(request, requirement_id)
        serializer = self.ConnectCredentialsInputSerializer(data=_exact_fields(request.data, {"type", "config"}))
        serializer.is_valid(raise_exception=True)
        services.end_user_connection_save(
            app=request.user.app, user_id=request.user.user_id, requirement=requirement,
            type=serializer.validated_data["type"], config=serializer.validated_data["config"],
            expected_account=request.auth.expected_account,
        )
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
