from django.urls import path

from . import apis

urlpatterns = [
    path("", apis.InvokeApi.as_view(), name="invoke"),
    path("v1/runs", apis.RunsApi.as_view(), name="runs"),
    path("v1/runs/<uuid:run_id>", apis.RunDetailApi.as_view(), name="run-detail"),
    path("v1/runs/<uuid:run_id>/events", apis.RunEventsApi.as_view(), name="run-events"),
    path("v1/runs/<uuid:run_id>/stream", apis.RunStreamApi.as_view(), name="run-stream"),
    path("v1/runs/<uuid:run_id>/cancel", apis.RunCancelApi.as_view(), name="run-cancel"),
    path("v1/files", apis.FilesApi.as_view(), name="files"),
    path("v1/requirements/status", apis.RequirementsStatusApi.as_view(), name="requirements-status"),
]
