"""Every admin page renders for the operator, and none of them shows a secret."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

from apps.engine import connection_types
from tests.support.admin import assert_no_secret


def _url(model, name: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{name}", args=args)


def _our_models():
    """The platform's models (test-only apps such as the OAuth2 provider used in tests are left out)."""
    return [(m, a) for m, a in admin.site._registry.items() if m.__module__.startswith("apps.")]


def test_every_registered_model_is_covered(world):
    registered = {m for m, _ in _our_models()}
    ours = {m for m in apps.get_models() if m.__module__.startswith("apps.")}
    # The through-model of version -> connection references is shown on the version page instead.
    unregistered = sorted(m.__name__ for m in ours - registered if m.__name__ != "VersionConnectionRef")
    assert not unregistered, f"models without an admin: {unregistered}"
    empty = [m.__name__ for m, _ in _our_models() if not m._default_manager.exists()]
    assert not empty, f"no object to render for: {empty}"


def test_it_renders_every_page_without_secrets(operator_client, world):
    seen = 0
    for model, model_admin in _our_models():
        pages = [_url(model, "changelist"), _url(model, "changelist") + "?q=a"]
        request = type("R", (), {"user": get_user_model().objects.get(username="operator")})()
        if model_admin.has_add_permission(request):
            pages.append(_url(model, "add"))
        for obj in model._default_manager.all()[:10]:
            pages.append(_url(model, "change", obj.pk))
            pages.append(_url(model, "history", obj.pk))
            if model_admin.has_delete_permission(request, obj):
                pages.append(_url(model, "delete", obj.pk))
        for url in pages:
            response = operator_client.get(url, follow=True)
            assert response.status_code == 200, url
            assert_no_secret(response.content, world.secrets)
            seen += 1
    assert seen > 50


@pytest.mark.parametrize("type_name", list(connection_types.REGISTRY))
def test_connection_add_form_renders_per_type(operator_client, world, type_name):
    response = operator_client.get(reverse("admin:connections_connection_add") + f"?type={type_name}")
    assert response.status_code == 200
    for f in connection_types.get_type(type_name).fields:
        if f.name in ("provider_id", "access_token", "refresh_token", "expires_at", "scope", "token_type"):
            continue
        assert f'name="cfg_{f.name}"' in response.content.decode()


def test_connection_add_starts_with_type_choice(operator_client, world):
    response = operator_client.get(reverse("admin:connections_connection_add"))
    assert response.status_code == 200
    body = response.content.decode()
    for type_name in connection_types.REGISTRY:
        assert f'value="{type_name}"' in body


def test_connection_change_form_masks_mapping_secrets_and_never_renders_secret_inputs(operator_client, world):
    connection = world.connections["http"]
    response = operator_client.get(reverse("admin:connections_connection_change", args=[connection.pk]))
    body = response.content.decode()
    assert "********" in body  # the Authorization header value
    assert "application/json" not in body  # every header value is write-only, a plain-looking one too (SPEC §12)
    api_key_conn = world.connections["http_api_key"]
    body = operator_client.get(reverse("admin:connections_connection_change", args=[api_key_conn.pk])).content.decode()
    assert 'type="password"' in body and "A value is stored." in body
    assert_no_secret(body, world.secrets)


def test_list_filters_render(operator_client, world):
    urls = [
        reverse("admin:connections_connection_changelist") + "?owner=end_user&status__exact=active&type__exact=http_api_key",
        reverse("admin:connect_enduserlink_changelist") + f"?status=active&app__id__exact={world.app.pk}&q=user-42",
        reverse("admin:accounts_accesskey_changelist") + "?revoked=no",
        reverse("admin:runs_run_changelist") + "?status__exact=completed",
    ]
    for url in urls:
        response = operator_client.get(url)
        assert response.status_code == 200, url
        assert_no_secret(response.content, world.secrets)
    body = operator_client.get(urls[0]).content.decode()
    assert "user-42" in body and "billing-api" not in body


def test_it_refuses_anonymous_and_non_staff_users(client, world, django_user_model):
    url = reverse("admin:connections_connection_changelist")
    response = client.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    visitor = django_user_model.objects.create_user("visitor", password="pw-visitor")
    client.force_login(visitor)
    response = client.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_without_permissions_gets_403(client, world, django_user_model):
    clerk = django_user_model.objects.create_user("clerk", password="pw-clerk", is_staff=True)
    client.force_login(clerk)
    assert client.get(reverse("admin:connections_connection_changelist")).status_code == 403
    assert client.get(reverse("admin:deployments_app_deploy", args=[world.app.pk])).status_code == 403


def test_read_only_models_refuse_writes(operator_client, world):
    version = world.v1
    url = reverse("admin:workflows_workflowversion_change", args=[version.pk])
    response = operator_client.post(url, {"description": "changed"})
    assert response.status_code == 403
    # Versions are added here now (validated, tests/workflows/test_admin.py); never changed or deleted.
    assert operator_client.get(reverse("admin:workflows_workflowversion_add")).status_code == 200
    assert operator_client.get(reverse("admin:workflows_workflowversion_delete", args=[version.pk])).status_code == 403
    version.refresh_from_db()
    assert version.description == ""


def test_version_page_shows_pretty_definition_and_references(operator_client, world):
    body = operator_client.get(reverse("admin:workflows_workflowversion_change", args=[world.v1.pk])).content.decode()
    assert "<pre" in body and "&quot;nodes&quot;: [" in body
    assert "billing-api (http_api_key)" in body
    body = operator_client.get(reverse("admin:workflows_workflowversion_change", args=[world.v2.pk])).content.decode()
    assert "Your billing account" in body


def test_model_names_read_as_words(operator_client, world):
    """Django splits CamelCase names at each capital ("OAuthProvider" → "o auth provider"): every name is set."""
    names = {str(m._meta.verbose_name_plural) for m in apps.get_models() if m.__module__.startswith("apps.")}
    assert not [name for name in names if "o auth" in name.lower() or name.endswith(" refs")]
    body = operator_client.get(reverse("admin:index")).content.decode()
    assert "OAuth2 providers" in body and "End-user links" in body and "O auth" not in body
