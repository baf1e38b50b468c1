"""Management API views (SPEC.md section 8): parse, call one service or selector, serialize.

One view class per URL; each HTTP method is one operation with its own input and output serializer.
Every view authenticates with an access key (401 without one) and reads through the scoped selectors
in `apps.management_api.selectors`, so an object outside the key's scope is a 404, never a 403.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import AccessKeyAuthentication, HasAccessKey
from apps.accounts.models import AccessKey
from apps.connect.services import link_revoke
from apps.connections import oauth_flows
from apps.connections import services as connection_services
from apps.connections.models import Connection
from apps.core.errors import BadRequest, Conflict, Forbidden
from apps.core.pagination import apply_sort, paginate
from apps.core.parsers import JSONParser
from apps.core.schema import error_responses
from apps.deployments import services as deployment_services
from apps.deployments.selectors import deployment_history
from apps.engine import connection_types
from apps.workflows import services as workflow_services

from . import examples as ex
from . import schema as _schema  # noqa: F401  (registers the access-key security scheme)
from . import selectors
from . import serializers as s


def _errors(*codes: int) -> dict:
    """401 and 404 can answer every operation; `codes` adds the others it can give."""
    return error_responses(401, 404, *codes, _404="No such object in the key's scope.")


PAGE_PARAMETERS = [
    OpenApiParameter("page", OpenApiTypes.INT, description="1-based page number."),
    OpenApiParameter("page_size", OpenApiTypes.INT, description="Items per page (1-100, default 20)."),
]


def _sort_parameter(allowed: list[str], default: str) -> OpenApiParameter:
    return OpenApiParameter(
        "sort", OpenApiTypes.STR,
        description=f"Comma-separated fields, `-` for descending. Sortable: {', '.join(allowed)}. Default `{default}`.",
    )


PROJECT_FILTER = OpenApiParameter(
    "project_id", OpenApiTypes.UUID, description="Only this project (organization-wide keys list all their projects)."
)


def _choice(params, name: str, choices: list[str]) -> str | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    if value not in choices:
        raise BadRequest("Invalid filter.", details={name: [f"must be one of {', '.join(choices)}"]})
    return value


class ManagementAPIView(APIView):
    authentication_classes = [AccessKeyAuthentication]
    permission_classes = [HasAccessKey]
    parser_classes = [JSONParser]
    rate_limits = dict.fromkeys(("POST", "PUT", "PATCH", "DELETE"), "management_writes")  # per access key

    @property
    def key(self) -> AccessKey:
        return self.request.auth

    def validated(self, serializer_class, request: Request) -> dict[str, Any]:
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def list_response(self, request: Request, queryset, serializer_class, *, sortable, default_sort) -> Response:
        queryset = apply_sort(queryset, request.query_params.get("sort"), allowed=sortable, default=default_sort)
        return Response(paginate(request, queryset, lambda obj: serializer_class(obj).data))


def _data(serializer_class, obj, status: int = 200) -> Response:
    return Response({"data": serializer_class(obj).data}, status=status)


# Connections

CONNECTION_SORT = ["name", "created_at", "updated_at"]


class ConnectionListApi(ManagementAPIView):
    @extend_schema(
        tags=["connections"], operation_id="connections_list", summary="List connections",
        parameters=[
            PROJECT_FILTER,
            OpenApiParameter("type", OpenApiTypes.STR, enum=[name for name, _ in connection_types.TYPE_CHOICES]),
            OpenApiParameter("status", OpenApiTypes.STR, enum=Connection.Status.values),
            OpenApiParameter("owner", OpenApiTypes.STR, enum=Connection.Owner.values,
                             description="`project` (shared) or `end_user` (created through the connect flow)."),
            *PAGE_PARAMETERS, _sort_parameter(CONNECTION_SORT, "-created_at"),
        ],
        responses={200: s.page(s.ConnectionSerializer), **_errors(400)},
    )
    def get(self, request):
        params = request.query_params
        queryset = selectors.connections_for_key(
            key=self.key, project_id=params.get("project_id"),
            type=_choice(params, "type", [name for name, _ in connection_types.TYPE_CHOICES]),
            status=_choice(params, "status", Connection.Status.values),
            owner=_choice(params, "owner", Connection.Owner.values),
        )
        return self.list_response(request, queryset, s.ConnectionSerializer, sortable=CONNECTION_SORT,
                                  default_sort="-created_at")

    @extend_schema(
        tags=["connections"], operation_id="connections_create", summary="Create a shared connection",
        request=s.ConnectionCreateSerializer,
        responses={201: s.envelope(s.ConnectionSerializer), **_errors(400, 409)},
    )
    def post(self, request):
        data = self.validated(s.ConnectionCreateSerializer, request)
        project = selectors.project_for_write(key=self.key, project_id=data.get("project_id"))
        connection = connection_services.connection_create(
            project=project, name=data["name"], type=data["type"], config=data["config"], actor=self.key
        )
        return _data(s.ConnectionSerializer, connection, 201)


class ConnectionDetailApi(ManagementAPIView):
    @extend_schema(
        tags=["connections"], operation_id="connections_retrieve", summary="Get a connection",
        responses={200: s.envelope(s.ConnectionSerializer), **_errors()},
    )
    def get(self, request, connection_id):
        connection = selectors.connection_get(key=self.key, connection_id=connection_id)
        return _data(s.ConnectionSerializer, connection)

    @extend_schema(
        tags=["connections"], operation_id="connections_update", summary="Replace a connection's config",
        description="Only `config` may change; `name` and `type` are fixed (400). The ID stays, so workflow "
                    "nodes keep pointing at the connection (key rotation).",
        request=s.ConnectionUpdateSerializer,
        responses={200: s.envelope(s.ConnectionSerializer), **_errors(400)},
    )
    def patch(self, request, connection_id):
        connection = selectors.connection_get(key=self.key, connection_id=connection_id)
        data = self.validated(s.ConnectionUpdateSerializer, request)
        connection = connection_services.connection_update_config(
            connection=connection, config=data["config"], actor=self.key
        )
        return _data(s.ConnectionSerializer, connection)

    @extend_schema(
        tags=["connections"], operation_id="connections_destroy", summary="Delete a connection",
        description="Refused with 409 while a saved or deployed workflow version references it; "
                    "`error.details` lists the referring versions (with their workflows) and Apps.",
        responses={204: OpenApiResponse(description="Deleted."), **_errors(409)}, examples=[ex.CONNECTION_REFERENCED],
    )
    def delete(self, request, connection_id):
        connection = selectors.connection_get(key=self.key, connection_id=connection_id)
        deployment_services.connection_delete(connection=connection)
        return Response(status=204)


class ConnectionAuthorizeApi(ManagementAPIView):
    @extend_schema(
        tags=["connections"], operation_id="connections_oauth2_authorize",
        summary="Start the OAuth2 consent flow of a shared connection",
        description="Returns the provider's authorization URL (authorization code + PKCE). Open it in a browser; "
                    "the callback stores the tokens and marks the connection `active`.",
        request=None,
        responses={200: s.envelope(s.AuthorizationUrlSerializer), **_errors(400)},
    )
    def post(self, request, connection_id):
        connection = selectors.connection_get(key=self.key, connection_id=connection_id)
        if connection.type != "oauth2" or connection.app_id is not None:
            raise BadRequest("Only a shared OAuth2 connection can be authorized here.",
                             details={"connection": ["not a shared oauth2 connection"]})
        url = oauth_flows.start_project_authorization(connection=connection, actor=self.key)
        return Response({"data": {"url": url}})


# OAuth2 providers

PROVIDER_SORT = ["name", "created_at", "updated_at"]


class OAuthProviderListApi(ManagementAPIView):
    @extend_schema(
        tags=["oauth2 providers"], operation_id="oauth2_providers_list", summary="List OAuth2 providers",
        parameters=[PROJECT_FILTER, *PAGE_PARAMETERS, _sort_parameter(PROVIDER_SORT, "-created_at")],
        responses={200: s.page(s.OAuthProviderSerializer), **_errors(400)},
    )
    def get(self, request):
        queryset = selectors.oauth_providers_for_key(key=self.key, project_id=request.query_params.get("project_id"))
        return self.list_response(request, queryset, s.OAuthProviderSerializer, sortable=PROVIDER_SORT,
                                  default_sort="-created_at")

    @extend_schema(
        tags=["oauth2 providers"], operation_id="oauth2_providers_create", summary="Register an OAuth2 provider",
        request=s.OAuthProviderCreateSerializer,
        responses={201: s.envelope(s.OAuthProviderSerializer), **_errors(400, 409)},
    )
    def post(self, request):
        data = dict(self.validated(s.OAuthProviderCreateSerializer, request))
        project = selectors.project_for_write(key=self.key, project_id=data.pop("project_id", None))
        provider = connection_services.oauth_provider_create(project=project, **data)
        return _data(s.OAuthProviderSerializer, provider, 201)


class OAuthProviderDetailApi(ManagementAPIView):
    @extend_schema(
        tags=["oauth2 providers"], operation_id="oauth2_providers_retrieve", summary="Get an OAuth2 provider",
        responses={200: s.envelope(s.OAuthProviderSerializer), **_errors()},
    )
    def get(self, request, provider_id):
        provider = selectors.oauth_provider_get(key=self.key, provider_id=provider_id)
        return _data(s.OAuthProviderSerializer, provider)

    @extend_schema(
        tags=["oauth2 providers"], operation_id="oauth2_providers_update", summary="Update an OAuth2 provider",
        request=s.OAuthProviderUpdateSerializer,
        responses={200: s.envelope(s.OAuthProviderSerializer), **_errors(400, 409)},
    )
    def patch(self, request, provider_id):
        provider = selectors.oauth_provider_get(key=self.key, provider_id=provider_id)
        data = self.validated(s.OAuthProviderUpdateSerializer, request)
        if "name" in data and data["name"] != provider.name and selectors.oauth_providers_for_key(
            key=self.key, project_id=provider.project_id
        ).filter(name=data["name"]).exists():
            raise Conflict("An OAuth2 provider with this name already exists in the project.", details={"name": [data["name"]]})
        provider = connection_services.oauth_provider_update(provider=provider, **data)
        return _data(s.OAuthProviderSerializer, provider)


# Workflows

WORKFLOW_SORT = ["name", "created_at", "updated_at"]


class WorkflowListApi(ManagementAPIView):
    @extend_schema(
        tags=["workflows"], operation_id="workflows_list", summary="List workflows",
        parameters=[PROJECT_FILTER, *PAGE_PARAMETERS, _sort_parameter(WORKFLOW_SORT, "-created_at")],
        responses={200: s.page(s.WorkflowSerializer), **_errors(400)},
    )
    def get(self, request):
        queryset = selectors.workflows_for_key(key=self.key, project_id=request.query_params.get("project_id"))
        return self.list_response(request, queryset, s.WorkflowSerializer, sortable=WORKFLOW_SORT,
                                  default_sort="-created_at")

    @extend_schema(
        tags=["workflows"], operation_id="workflows_create", summary="Create a workflow",
        request=s.WorkflowCreateSerializer,
        responses={201: s.envelope(s.WorkflowSerializer), **_errors(400, 409)},
    )
    def post(self, request):
        data = self.validated(s.WorkflowCreateSerializer, request)
        project = selectors.project_for_write(key=self.key, project_id=data.get("project_id"))
        workflow = workflow_services.workflow_create(project=project, name=data["name"], description=data["description"])
        return _data(s.WorkflowSerializer, selectors.workflow_get(key=self.key, workflow_id=workflow.id), 201)


class WorkflowDetailApi(ManagementAPIView):
    @extend_schema(
        tags=["workflows"], operation_id="workflows_retrieve", summary="Get a workflow",
        responses={200: s.envelope(s.WorkflowSerializer), **_errors()},
    )
    def get(self, request, workflow_id):
        return _data(s.WorkflowSerializer, selectors.workflow_get(key=self.key, workflow_id=workflow_id))


REQUIREMENT_SORT = ["name", "created_at", "updated_at"]


class RequirementListApi(ManagementAPIView):
    @extend_schema(
        tags=["workflows"], operation_id="requirements_list", summary="List a workflow's requirements",
        parameters=[*PAGE_PARAMETERS, _sort_parameter(REQUIREMENT_SORT, "name")],
        responses={200: s.page(s.RequirementSerializer), **_errors(400)},
    )
    def get(self, request, workflow_id):
        workflow = selectors.workflow_get(key=self.key, workflow_id=workflow_id)
        return self.list_response(request, selectors.requirements_for_workflow(workflow=workflow),
                                  s.RequirementSerializer, sortable=REQUIREMENT_SORT, default_sort="name")

    @extend_schema(
        tags=["workflows"], operation_id="requirements_create", summary="Add an end-user connection requirement",
        request=s.RequirementCreateSerializer,
        responses={201: s.envelope(s.RequirementSerializer), **_errors(400, 409)},
    )
    def post(self, request, workflow_id):
        workflow = selectors.workflow_get(key=self.key, workflow_id=workflow_id)
        data = self.validated(s.RequirementCreateSerializer, request)
        spec = {k: (str(v) if k == "provider_id" else v) for k, v in data["spec"].items()}
        requirement = workflow_services.requirement_create(
            workflow=workflow, name=data["name"], title=data["title"], description=data["description"], spec=spec
        )
        return _data(s.RequirementSerializer, requirement, 201)


class RequirementDetailApi(ManagementAPIView):
    @extend_schema(
        tags=["workflows"], operation_id="requirements_retrieve", summary="Get a requirement",
        responses={200: s.envelope(s.RequirementSerializer), **_errors()},
    )
    def get(self, request, workflow_id, requirement_id):
        workflow = selectors.workflow_get(key=self.key, workflow_id=workflow_id)
        return _data(s.RequirementSerializer, selectors.requirement_get(workflow=workflow, requirement_id=requirement_id))

    @extend_schema(
        tags=["workflows"], operation_id="requirements_update", summary="Change a requirement's title or description",
        description="`name`, `type` and `spec` are fixed: links and versions rely on them (400).",
        request=s.RequirementUpdateSerializer,
        responses={200: s.envelope(s.RequirementSerializer), **_errors(400)},
    )
    def patch(self, request, workflow_id, requirement_id):
        workflow = selectors.workflow_get(key=self.key, workflow_id=workflow_id)
        requirement = selectors.requirement_get(workflow=workflow, requirement_id=requirement_id)
        data = self.validated(s.RequirementUpdateSerializer, request)
        requirement = workflow_services.requirement_update(
            requirement=requirement, title=data.get("title"), description=data.get("description")
        )
        return _data(s.RequirementSerializer, requirement)


VERSION_SORT = ["number", "created_at"]


class WorkflowVersionListApi(ManagementAPIView):
    @extend_schema(
        tags=["workflows"], operation_id="workflow_versions_list", summary="List a workflow's versions",
        parameters=[*PAGE_PARAMETERS, _sort_parameter(VERSION_SORT, "-number")],
        responses={200: s.page(s.WorkflowVersionSerializer), **_errors(400)},
    )
    def get(self, request, workflow_id):
        workflow = selectors.workflow_get(key=self.key, workflow_id=workflow_id)
        return self.list_response(request, selectors.versions_for_workflow(workflow=workflow),
                                  s.WorkflowVersionSerializer, sortable=VERSION_SORT, default_sort="-number")

    @extend_schema(
        tags=["workflows"], operation_id="workflow_versions_create", summary="Save version n+1",
        description="Validates the definition (400 with `details` keyed by a path into it, e.g. "
                    "`nodes.2.config.headers.Authorization`) and stores an immutable version numbered n+1.",
        request=s.WorkflowVersionCreateSerializer,
        responses={201: s.envelope(s.WorkflowVersionSerializer), **_errors(400, 409)},
    )
    def post(self, request, workflow_id):
        workflow = selectors.workflow_get(key=self.key, workflow_id=workflow_id)
        data = self.validated(s.WorkflowVersionCreateSerializer, request)
        version = workflow_services.workflow_version_create(
            workflow=workflow, definition=data["definition"], description=data["description"], actor=self.key
        )
        return _data(s.WorkflowVersionSerializer, selectors.version_get(workflow=workflow, version_id=version.id), 201)


class WorkflowVersionDetailApi(ManagementAPIView):
    @extend_schema(
        tags=["workflows"], operation_id="workflow_versions_retrieve", summary="Get a workflow version",
        responses={200: s.envelope(s.WorkflowVersionSerializer), **_errors()},
    )
    def get(self, request, workflow_id, version_id):
        workflow = selectors.workflow_get(key=self.key, workflow_id=workflow_id)
        return _data(s.WorkflowVersionSerializer, selectors.version_get(workflow=workflow, version_id=version_id))


# Apps, deployments, links

APP_SORT = ["name", "created_at", "updated_at"]


def _require_org_wide_for_hostname(key: AccessKey, data: dict) -> None:
    """SPEC §12: a custom hostname decides which requests reach an App, across the organization's
    projects, so setting or changing one needs an organization-wide key (a project key: 403)."""
    if data.get("hostname") is not None and not key.is_org_wide:
        raise Forbidden("Setting a custom hostname needs an organization-wide access key.",
                        details={"hostname": ["needs an organization-wide access key"]})


class AppListApi(ManagementAPIView):
    @extend_schema(
        tags=["apps"], operation_id="apps_list", summary="List Apps",
        parameters=[PROJECT_FILTER, *PAGE_PARAMETERS, _sort_parameter(APP_SORT, "-created_at")],
        responses={200: s.page(s.AppSerializer), **_errors(400)},
    )
    def get(self, request):
        queryset = selectors.apps_for_key(key=self.key, project_id=request.query_params.get("project_id"))
        return self.list_response(request, queryset, s.AppSerializer, sortable=APP_SORT, default_sort="-created_at")

    @extend_schema(
        tags=["apps"], operation_id="apps_create", summary="Create an App",
        description="The answer carries `callback_signing_secret`, shown this once. A custom `hostname` needs an "
                    "organization-wide key (403 otherwise).",
        request=s.AppCreateSerializer,
        responses={201: s.envelope(s.AppCreatedSerializer), **_errors(400, 403, 409)},
    )
    def post(self, request):
        data = self.validated(s.AppCreateSerializer, request)
        _require_org_wide_for_hostname(self.key, data)
        project = selectors.project_for_write(key=self.key, project_id=data.get("project_id"))
        app = deployment_services.app_create(
            project=project, name=data["name"], access_type=data["access_type"],
            allowed_redirect_origins=data["allowed_redirect_origins"], hostname=data.get("hostname"),
            allow_anonymous_uploads=data["allow_anonymous_uploads"], mcp_enabled=data["mcp_enabled"],
            connect_verifier_url=data["connect_verifier_url"],
            **{name: data[name] for name in deployment_services.BRANDING_FIELDS if name in data},
        )
        return _data(s.AppCreatedSerializer, app, 201)


class AppDetailApi(ManagementAPIView):
    @extend_schema(
        tags=["apps"], operation_id="apps_retrieve", summary="Get an App",
        responses={200: s.envelope(s.AppSerializer), **_errors()},
    )
    def get(self, request, app_id):
        return _data(s.AppSerializer, selectors.app_get(key=self.key, app_id=app_id))

    @extend_schema(
        tags=["apps"], operation_id="apps_update", summary="Update an App",
        description="Changing `hostname` needs an organization-wide key (403 otherwise).",
        request=s.AppUpdateSerializer,
        responses={200: s.envelope(s.AppSerializer), **_errors(400, 403, 409)},
    )
    def patch(self, request, app_id):
        app = selectors.app_get(key=self.key, app_id=app_id)
        data = self.validated(s.AppUpdateSerializer, request)
        _require_org_wide_for_hostname(self.key, data)
        app = deployment_services.app_update(app=app, actor=self.key, **data)
        return _data(s.AppSerializer, app)


class DeploymentListApi(ManagementAPIView):
    @extend_schema(
        tags=["apps"], operation_id="deployments_list", summary="Deployment history, newest first",
        parameters=PAGE_PARAMETERS,
        responses={200: s.page(s.DeploymentSerializer), **_errors(400)},
    )
    def get(self, request, app_id):
        app = selectors.app_get(key=self.key, app_id=app_id)
        queryset = deployment_history(app=app).select_related("workflow_version")
        return Response(paginate(request, queryset, lambda d: s.DeploymentSerializer(d).data))

    @extend_schema(
        tags=["apps"], operation_id="deployments_create", summary="Deploy a workflow version",
        description="A version of a workflow of another project is a 404.",
        request=s.DeploymentCreateSerializer,
        responses={201: s.envelope(s.DeploymentSerializer), **_errors(400)},
    )
    def post(self, request, app_id):
        app = selectors.app_get(key=self.key, app_id=app_id)
        data = self.validated(s.DeploymentCreateSerializer, request)
        version = selectors.version_for_app(app=app, version_id=data["workflow_version_id"])
        deployment = deployment_services.deploy(app=app, version=version, actor=self.key)
        return _data(s.DeploymentSerializer, deployment, 201)


class RollbackApi(ManagementAPIView):
    @extend_schema(
        tags=["apps"], operation_id="apps_rollback", summary="Roll back",
        description="Redeploys the version of `deployment_id`, or of the deployment before the current one. "
                    "The rollback is a new deployment (history keeps every entry); 409 when there is nothing "
                    "to roll back to.",
        request=s.RollbackSerializer,
        responses={201: s.envelope(s.DeploymentSerializer), **_errors(400, 409)},
    )
    def post(self, request, app_id):
        app = selectors.app_get(key=self.key, app_id=app_id)
        data = self.validated(s.RollbackSerializer, request)
        target = None
        if data.get("deployment_id"):
            target = selectors.deployment_for_app(app=app, deployment_id=data["deployment_id"])
        deployment = deployment_services.rollback(app=app, deployment=target, actor=self.key)
        return _data(s.DeploymentSerializer, deployment, 201)


LINK_SORT = ["created_at", "updated_at", "user_id"]


class LinkListApi(ManagementAPIView):
    @extend_schema(
        tags=["apps"], operation_id="links_list", summary="List end-user links",
        parameters=[
            OpenApiParameter("user_id", OpenApiTypes.STR),
            OpenApiParameter("requirement_id", OpenApiTypes.UUID),
            OpenApiParameter("status", OpenApiTypes.STR, enum=Connection.Status.values,
                             description="The linked connection's status."),
            *PAGE_PARAMETERS, _sort_parameter(LINK_SORT, "-created_at"),
        ],
        responses={200: s.page(s.LinkSerializer), **_errors(400)},
    )
    def get(self, request, app_id):
        app = selectors.app_get(key=self.key, app_id=app_id)
        params = request.query_params
        queryset = selectors.links_for_app(
            app=app, user_id=params.get("user_id"), requirement_id=params.get("requirement_id"),
            status=_choice(params, "status", Connection.Status.values),
        )
        return self.list_response(request, queryset, s.LinkSerializer, sortable=LINK_SORT, default_sort="-created_at")


class LinkDetailApi(ManagementAPIView):
    @extend_schema(
        tags=["apps"], operation_id="links_destroy", summary="Remove an end-user link",
        description="Deletes the link and the end user's connection behind it, revoking an OAuth2 grant upstream "
                    "where the provider supports it.",
        responses={204: OpenApiResponse(description="Deleted."), **_errors()}, examples=[ex.LINK_NOT_FOUND],
    )
    def delete(self, request, app_id, link_id):
        app = selectors.app_get(key=self.key, app_id=app_id)
        link = selectors.link_get(app=app, link_id=link_id)
        link_revoke(link=link)
        return Response(status=204)
