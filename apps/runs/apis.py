"""App-host API: direct invoke, runs, run events and streams, cancel, files, requirement status.
`request.app` is set by AppHostMiddleware."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import AccessKeyAuthentication, CanUseApp
from apps.core.errors import BadRequest, NotFound, Unauthorized, UnsupportedMediaType
from apps.core.pagination import paginate
from apps.core.schema import page

from . import modes
from . import schema as doc
from .callbacks import validate_callbacks
from .files import file_create, files_for_app, files_store, serialize_file, upload_digest, uploads_check
from .lifecycle import cancel_run
from .models import Run, RunEvent
from .requests import body_fingerprint, idempotency_scope, parse_invoke_request, parse_runs_request
from .selectors import requirements_status, runs_for_app
from .serializers import serialize_event, serialize_run
from .services import check_input, idempotent_run, run_sync
from .sse import run_event_frames, sse_response, tail_events
from .stream_tokens import CanUseAppOrStreamGrant, StreamTokenAuthentication


class EventStreamRenderer(BaseRenderer):
    """Lets clients that send `Accept: text/event-stream` (EventSource) reach the SSE answers; errors are
    still the JSON envelope."""

    media_type = "text/event-stream"
    format = "sse"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        # The SSE answers are StreamingHttpResponses that never come here: what comes here is a JSON body
        # (an error, a 202, a synchronous run), so label it JSON rather than text/event-stream.
        response = (renderer_context or {}).get("response")
        if response is not None:
            response["Content-Type"] = JSONRenderer.media_type
        return JSONRenderer().render(data)


class AppApi(APIView):
    authentication_classes = [AccessKeyAuthentication]
    permission_classes = [CanUseApp]

    def idempotency_key(self, request) -> str:
        return request.headers.get("Idempotency-Key", "").strip()

    def start_run(self, request, parse, *, kind: str):
        """Invoke and `POST /v1/runs`: parse exactly the documented fields, validate the whole request (input,
        callbacks, files) before anything is stored, then run in the requested mode (SPEC.md section 12)."""
        run_request = parse(request.data, idempotency_key=self.idempotency_key(request))
        if run_request.user_id and request.auth is None:
            # A public App answers anyone; a user_id without a key would let anyone run as any end user.
            raise Unauthorized("Runs with a user_id need an access key, also on public Apps.",
                               details={"user_id": ["needs an access key"]})
        uploads = request.FILES.getlist("files") if _is_multipart(request) else []
        uploads_check(app=request.app, uploads=uploads, anonymous=request.auth is None)
        if run_request.file_ids:
            files_for_app(app=request.app, file_ids=run_request.file_ids)
        if run_request.callbacks:
            validate_callbacks(run_request.callbacks)
        if uploads:
            check_input(app=request.app, run_input=run_request.input)  # (without uploads the run path checks it)
        if run_request.idempotency_key:  # scope and fingerprint mean nothing without a key: not computed then
            run_request.idempotency_scope = idempotency_scope(
                access_key_id=str(request.auth.id) if request.auth is not None else None,
                user_id=run_request.user_id, endpoint=kind,
            )
            run_request.fingerprint = body_fingerprint(run_request, uploads=[upload_digest(u) for u in uploads])
        if uploads and idempotent_run(app=request.app, request=run_request) is None:
            # A repeat is answered with the first run below: its uploads are not stored again.
            created = files_store(app=request.app, uploads=uploads)
            run_request.file_ids = [*run_request.file_ids, *(str(f.id) for f in created)]
        if run_request.mode == "sync":
            run, _ = run_sync(app=request.app, request=run_request)
            return Response(serialize_run(run))
        return modes.start(request=request, run_request=run_request, kind=kind)


def _is_multipart(request) -> bool:
    return (request.content_type or "").startswith("multipart/")


class InvokeApi(AppApi):
    """`POST /`: the seed's direct invoke. Sync by default; stream (SSE) and async (202 + callbacks)."""

    renderer_classes = [JSONRenderer, EventStreamRenderer]
    anonymous_methods = ("POST",)  # public Apps: invoke carries no user_id, so no end user's credentials
    rate_limits = {"POST": "runs"}  # per access key; without one (public Apps) per client IP (apps.core.ratelimit)

    @extend_schema(
        tags=[doc.TAG], operation_id="app_invoke", summary="Invoke the App (sync, async with callbacks, or stream)",
        description="The seed's direct invoke. Synchronous by default: 200 with the Run object itself (bare). "
                    "`execution_mode: async`: "
                    "202 `{id, status: accepted, stream_url}`, the run's end is POSTed to the callbacks. `stream: true`: "
                    "`text/event-stream`. Exactly the documented fields: any other (e.g. `connections`, `user_id`) is "
                    "a 400 naming it, as connections cannot be overridden per request." + doc.PUBLIC_APPS,
        request={"application/json": doc.InvokeSerializer, "multipart/form-data": doc.InvokeMultipartSerializer},
        parameters=[doc.IDEMPOTENCY_KEY],
        responses={(200, "application/json"): doc.RunSerializer, (200, "text/event-stream"): doc.SSE_INVOKE,
                   (202, "application/json"): doc.RunAcceptedSerializer,
                   **doc.app_errors(400, 409, 413, 415, 422, 502)},
    )
    def post(self, request):
        return self.start_run(request, parse_invoke_request, kind="invoke")


class RunsApi(AppApi):
    renderer_classes = [JSONRenderer, EventStreamRenderer]
    anonymous_methods = ("POST",)  # public Apps: runs without user_id only (see post)
    rate_limits = {"POST": "runs"}  # per access key; without one (public Apps) per client IP (apps.core.ratelimit)

    @extend_schema(
        tags=[doc.TAG], operation_id="app_runs_list", summary="List the App's runs (newest first)",
        description="Filters: `status` (repeatable), `user_id`, `session_id`." + doc.PUBLIC_APPS,
        parameters=[*doc.RUN_FILTERS, *doc.PAGE_PARAMETERS],
        responses={200: page(doc.RunSerializer), **doc.app_errors(400)},
    )
    def get(self, request):
        return Response(paginate(request, runs_for_app(app=request.app, params=request.query_params), serialize_run))

    @extend_schema(
        tags=[doc.TAG], operation_id="app_runs_create", summary="Run the App's workflow (sync, background or stream)",
        description="Synchronous by default: 200 with the Run object itself (bare, as the seed's example reads "
                    "`run[\"status\"]`). `background: true`: 202 with the Run and its `stream_url` (status "
                    "`created`). `stream: true`: `text/event-stream` of run events. `user_id` picks the end user whose "
                    "linked connections satisfy the workflow's requirements. Exactly the documented fields: any other "
                    "is a 400 naming it." + doc.PUBLIC_APPS,
        request={"application/json": doc.RunCreateSerializer, "multipart/form-data": doc.RunCreateMultipartSerializer},
        parameters=[doc.IDEMPOTENCY_KEY],
        responses={(200, "application/json"): doc.RunSerializer, (200, "text/event-stream"): doc.SSE_RUN_EVENTS,
                   (202, "application/json"): doc.RunStartedSerializer,
                   **doc.app_errors(400, 409, 413, 415, 422, 502)},
    )
    def post(self, request):
        return self.start_run(request, parse_runs_request, kind="runs")


def get_run(request, run_id) -> Run:
    """A run of this App. Anonymous callers (public Apps) reach only runs without a user_id, by their ID."""
    run = Run.objects.filter(app=request.app, id=run_id).first()
    if run is None or (request.auth is None and run.user_id):
        raise NotFound("No such run.")
    return run


class RunDetailApi(AppApi):
    anonymous_methods = ("GET",)  # public Apps: runs without user_id, by ID (get_run)
    @extend_schema(tags=[doc.TAG], operation_id="app_runs_retrieve", summary="A run", description=doc.PUBLIC_APPS.strip(),
                   responses={200: doc.RunSerializer, **doc.app_errors()})
    def get(self, request, run_id):
        return Response(serialize_run(get_run(request, run_id)))


class RunEventsApi(AppApi):
    anonymous_methods = ("GET",)  # public Apps: runs without user_id, by ID (get_run)
    """`GET /v1/runs/{id}/events`: paginated, in sequence order."""

    @extend_schema(
        tags=[doc.TAG], operation_id="app_runs_events_list", summary="A run's events (sequence order)",
        description=doc.PUBLIC_APPS.strip(), parameters=doc.PAGE_PARAMETERS,
        responses={200: page(doc.RunEventSerializer), **doc.app_errors(400)},
    )
    def get(self, request, run_id):
        run = get_run(request, run_id)
        return Response(paginate(request, RunEvent.objects.filter(run=run).order_by("sequence"), serialize_event))


class RunStreamApi(AppApi):
    anonymous_methods = ("GET",)  # public Apps: runs without user_id, by ID (get_run)
    """`GET /v1/runs/{id}/stream?after_sequence=N`: SSE of the run's events after N, closed after the
    terminal event; `: heartbeat` when idle. Also opened by the `?token=` of a `stream_url` (this view only)."""

    authentication_classes = [StreamTokenAuthentication, AccessKeyAuthentication]
    permission_classes = [CanUseAppOrStreamGrant]
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(
        tags=[doc.TAG], operation_id="app_runs_stream", summary="Stream a run's events (Server-Sent Events)",
        description="Events after `after_sequence`, then live ones until the run ends." + doc.PUBLIC_APPS,
        parameters=[doc.AFTER_SEQUENCE, doc.STREAM_TOKEN],
        responses={(200, "text/event-stream"): doc.SSE_RUN_EVENTS, **doc.app_errors(400)},
    )
    def get(self, request, run_id):
        run = get_run(request, run_id)
        # EventSource reconnects with Last-Event-ID (our `id:` is the sequence) and no after_sequence.
        raw = request.query_params.get("after_sequence") or request.headers.get("Last-Event-ID") or "0"
        try:
            after = int(raw)
        except ValueError:
            after = -1
        if after < 0:
            raise BadRequest("Invalid after_sequence.", details={"after_sequence": ["must be an integer of at least 0"]})
        return sse_response(run_event_frames(tail_events(run_id=run.id, after_sequence=after)), run_id=str(run.id))


class RunCancelApi(AppApi):
    anonymous_methods = ("POST",)  # public Apps: runs without user_id, by ID (get_run)
    """`POST /v1/runs/{id}/cancel`: `{"message": "canceled"}`; a finished run is left as it is (200)."""

    @extend_schema(
        tags=[doc.TAG], operation_id="app_runs_cancel", summary="Cancel a run",
        description="A finished run is left as it is (200 all the same)." + doc.PUBLIC_APPS, request=None,
        responses={200: doc.CancelSerializer, **doc.app_errors()},
    )
    def post(self, request, run_id):
        run = get_run(request, run_id)
        cancel_run(run_id=run.id)
        return Response({"message": "canceled"})


class FilesApi(AppApi):
    """`POST /v1/files` (multipart part `file`) → 201 `{id, name, size, mime_type}` (bare, like every single
object on the App host)."""

    anonymous_methods = ("POST",)  # public Apps: only if the App allows anonymous uploads (uploads_check)

    @extend_schema(
        tags=[doc.TAG], operation_id="app_files_create", summary="Upload a file for later runs",
        description="One multipart part named `file`; the File belongs to this App (use its ID in `file_ids`)."
                    + doc.PUBLIC_APPS,
        request={"multipart/form-data": doc.FileUploadSerializer},
        responses={201: doc.FileSerializer, **doc.app_errors(400, 413, 415)},
    )
    def post(self, request):
        if not _is_multipart(request):
            raise UnsupportedMediaType("Upload files as multipart/form-data with a part named 'file'.")
        uploads = request.FILES.getlist("file")
        unknown = sorted(set(request.data.keys()) - {"file"})
        if unknown:
            raise BadRequest(f"Unknown field(s): {', '.join(unknown)}.", details={k: ["unknown field"] for k in unknown})
        if len(uploads) != 1:
            raise BadRequest("Send exactly one part named 'file'.", details={"file": ["exactly one file is required"]})
        record = file_create(app=request.app, upload=uploads[0], anonymous=request.auth is None)
        return Response(serialize_file(record), status=201)


class RequirementsStatusApi(AppApi):
    @extend_schema(
        tags=[doc.TAG], operation_id="app_requirements_status",
        summary="Which of the deployed version's requirements this end user has satisfied",
        description=doc.PUBLIC_APPS.strip(), parameters=[doc.USER_ID],
        responses={200: doc.RequirementsStatusSerializer, **doc.app_errors(400)},
    )
    def get(self, request):
        user_id = request.query_params.get("user_id", "")
        if not user_id or len(user_id) > 255:
            raise BadRequest("user_id is required (1-255 characters).", details={"user_id": ["this field is required"]})
        return Response(requirements_status(app=request.app, user_id=user_id))
