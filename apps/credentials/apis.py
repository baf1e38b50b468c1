"""Internal credentials API (platform host only; see config/urls.py — App hosts never route here)."""

from __future__ import annotations

from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.connections.resolved import to_resolved_connection

from .authentication import IsSystem, SystemCredentialAuthentication
from .models import CredentialAccess
from .services import handle_unauthorized, internal_api_refusal_record, resolve_credentials


def _connection_payload(resolved) -> dict:
    return {
        "connection_id": resolved.connection_id,
        "type": resolved.type,
        "config": dict(resolved.config),
        "owner": resolved.owner,
        "user_id": resolved.user_id,
        "requirement_id": resolved.requirement_id,
    }


class _InternalView(APIView):
    authentication_classes = [SystemCredentialAuthentication]
    permission_classes = [IsSystem]

    def permission_denied(self, request, message=None, code=None):
        internal_api_refusal_record(reason="missing system credential", remote_addr=request.META.get("REMOTE_ADDR", ""))
        super().permission_denied(request, message=message, code=code)

    def perform_authentication(self, request):
        try:
            super().perform_authentication(request)
        except exceptions.AuthenticationFailed as exc:
            internal_api_refusal_record(reason=getattr(exc, "refusal_reason", "invalid system credential"),
                                        remote_addr=request.META.get("REMOTE_ADDR", ""))
            raise


class ResolveApi(_InternalView):
    class InputSerializer(serializers.Serializer):
        connection_ids = serializers.ListField(child=serializers.UUIDField(), allow_empty=True, max_length=500)
        requirement_ids = serializers.ListField(child=serializers.UUIDField(), allow_empty=True, max_length=500)
        app_id = serializers.UUIDField()
        user_id = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)
        run_id = serializers.UUIDField(required=False, allow_null=True)

    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        resolution = resolve_credentials(
            connection_ids=[str(x) for x in v["connection_ids"]],
            requirement_ids=[str(x) for x in v["requirement_ids"]],
            app_id=str(v["app_id"]),
            user_id=v.get("user_id") or None,
            run_id=str(v["run_id"]) if v.get("run_id") else None,
            requester=CredentialAccess.Requester.INTERNAL_API,
        )
        body = {
            "connections": {cid: _connection_payload(c) for cid, c in resolution.connections.items()},
            "requirements": {rid: _connection_payload(c) for rid, c in resolution.requirements.items()},
            "unsatisfied": resolution.unsatisfied,
        }
        response = Response(body)
        response["Cache-Control"] = "no-store"
        return response


class UnauthorizedApi(_InternalView):
    """The engine reports a provider 401: refresh (OAuth2) or mark the end-user connection unauthorized."""

    class InputSerializer(serializers.Serializer):
        connection_id = serializers.UUIDField()
        requirement_id = serializers.UUIDField(required=False, allow_null=True)
        run_id = serializers.UUIDField(required=False, allow_null=True)

    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        requirement_id = str(v["requirement_id"]) if v.get("requirement_id") else None
        refreshed = handle_unauthorized(
            connection_id=str(v["connection_id"]), run_id=str(v["run_id"]) if v.get("run_id") else None
        )
        if refreshed is None:
            return Response({"connection": None})
        response = Response({"connection": _connection_payload(to_resolved_connection(refreshed, requirement_id=requirement_id))})
        response["Cache-Control"] = "no-store"
        return response
