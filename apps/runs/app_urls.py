from django.urls import path

from . import apis

urlpatterns = [
    path("", apis.InvokeApi.as_view(), name="invoke"),
    path("v1/runs", apis.RunsApi.as_view(), name="runs"),
    path("v1/runs/<uuid:run_id>", apis.RunDetailApi.as_view(), name="run-detail"),
    path("v1/requirements/status", apis.RequirementsStatusApi.as_view(), name="requirements-status"),
]
