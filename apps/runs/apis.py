"""App-host API: direct invoke, runs, requirement status. `request.app` is set by AppHostMiddleware."""

from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import AccessKeyAuthentication, CanUseApp
from apps.core.errors import BadRequest, NotFound
from apps.core.pagination import paginate

from . import modes
from .models import Run
from .requests import parse_invoke_request, parse_runs_request
from .selectors import requirements_status, runs_for_app
from .services import run_sync, serialize_run


class AppApi(APIView):
    authentication_classes = [AccessKeyAuthentication]
    permission_classes = [CanUseApp]

    def idempotency_key(self, request) -> str:
        return request.headers.get("Idempotency-Key", "").strip()


class InvokeApi(AppApi):
    """`POST /`: the seed's direct invoke. Sync by default; stream (SSE) and async (202 + callbacks)."""

    def post(self, request):
        run_request = parse_invoke_request(request.data, idempotency_key=self.idempotency_key(request))
        if run_request.mode == "sync":
            run, _ = run_sync(app=request.app, request=run_request)
            return Response({"data": serialize_run(run)})
        return modes.start(request=request, app=request.app, run_request=run_request, kind="invoke")


class RunsApi(AppApi):
    def get(self, request):
        return Response(paginate(request, runs_for_app(app=request.app, params=request.query_params), serialize_run))

    def post(self, request):
        run_request = parse_runs_request(request.data, idempotency_key=self.idempotency_key(request))
        if run_request.mode == "sync":
            run, _ = run_sync(app=request.app, request=run_request)
            return Response({"data": serialize_run(run)})
        return modes.start(request=request, app=request.app, run_request=run_request, kind="runs")


def get_run(request, run_id) -> Run:
    run = Run.objects.filter(app=request.app, id=run_id).first()
    if run is None:
        raise NotFound("No such run.")
    return run


class RunDetailApi(AppApi):
    def get(self, request, run_id):
        return Response({"data": serialize_run(get_run(request, run_id))})


class RequirementsStatusApi(AppApi):
    def get(self, request):
        user_id = request.query_params.get("user_id", "")
        if not user_id or len(user_id) > 255:
            raise BadRequest("user_id is required (1-255 characters).", details={"user_id": ["this field is required"]})
        return Response(requirements_status(app=request.app, user_id=user_id))
