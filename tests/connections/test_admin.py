"""Connections in the admin: per-type forms, write-only secrets, history, delete protection, test action."""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.urls import reverse

from apps.connections.models import Connection, ConnectionConfigChange, OAuthProvider
from apps.engine.connection_types import MASK
from tests.factories import CANARIES
from tests.support.admin import assert_no_secret, changelist_action
from tests.support.http_stub import HttpStub, StubResponse

CHANGELIST = "admin:connections_connection_changelist"


def change_url(connection) -> str:
    return reverse("admin:connections_connection_change", args=[connection.pk])


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def api_key_form(**overrides) -> dict:
    data = {"cfg_url": "https://billing.example.com/v2", "cfg_api_key": "", "cfg_header": "Authorization",
            "cfg_prefix": "Bearer ", "config_changes-TOTAL_FORMS": "0", "config_changes-INITIAL_FORMS": "0"}
    data.update(overrides)
    return data


def test_it_keeps_the_stored_secret_when_the_secret_input_is_blank(operator_client, world):
    connection = world.connections["http_api_key"]
    before = connection.config_changes.count()
    response = operator_client.post(change_url(connection), api_key_form())
    assert response.status_code == 302, response.content.decode()[:2000]
    connection.refresh_from_db()
    assert connection.config["api_key"] == CANARIES["shared_api_key"]
    assert connection.config["url"] == "https://billing.example.com/v2"
    change = connection.config_changes.first()
    assert connection.config_changes.count() == before + 1
    assert change.changed_fields == ["url"] and change.actor == "user:operator"


def test_it_replaces_the_secret_with_a_new_value_and_records_history(operator_client, world):
    connection = world.connections["http_api_key"]
    response = operator_client.post(change_url(connection), api_key_form(cfg_url="https://billing.example.com",
                                                                         cfg_api_key="rotated-key-123"))
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.config["api_key"] == "rotated-key-123"
    change = ConnectionConfigChange.objects.filter(connection=connection).first()
    assert change.changed_fields == ["api_key"]
    assert "rotated-key-123" not in json.dumps([change.changed_fields, change.fingerprint, change.actor])
    log = LogEntry.objects.get(object_id=str(connection.pk))
    assert "API key" in log.change_message and "rotated-key-123" not in log.change_message + log.object_repr
    history = operator_client.get(reverse("admin:connections_connection_history", args=[connection.pk])).content.decode()
    assert "rotated-key-123" not in history


def test_name_type_and_project_cannot_be_changed(operator_client, world, teammate_project):
    connection = world.connections["http_api_key"]
    response = operator_client.post(
        change_url(connection), api_key_form(name="renamed", type="http", project=str(teammate_project.pk))
    )
    assert response.status_code == 302
    connection.refresh_from_db()
    assert (connection.name, connection.type, connection.project_id) == ("billing-api", "http_api_key", world.project.pk)


def test_it_validates_config_fields(operator_client, world):
    connection = world.connections["http_api_key"]
    response = operator_client.post(change_url(connection), api_key_form(cfg_url="ftp://nope"))
    assert response.status_code == 200
    assert "must be an http(s) URL" in response.content.decode()
    connection.refresh_from_db()
    assert connection.config["url"] == "https://billing.example.com"


def test_masked_mapping_values_keep_the_stored_secret(operator_client, world):
    connection = world.connections["http"]
    headers = {"Authorization": MASK, "Accept": "text/plain"}
    response = operator_client.post(change_url(connection), {
        "cfg_url": "https://api.example.com", "cfg_method": "GET", "cfg_headers": json.dumps(headers),
        "cfg_params": "{}", "cfg_data": "", "cfg_parameters": "",
        "config_changes-TOTAL_FORMS": "0", "config_changes-INITIAL_FORMS": "0",
    })
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.config["headers"] == {"Authorization": f"Token {CANARIES['header_secret']}", "Accept": "text/plain"}


def test_invalid_json_mapping_is_a_form_error(operator_client, world):
    connection = world.connections["http"]
    response = operator_client.post(change_url(connection), {
        "cfg_url": "https://api.example.com", "cfg_method": "GET", "cfg_headers": "{not json",
        "config_changes-TOTAL_FORMS": "0", "config_changes-INITIAL_FORMS": "0",
    })
    assert response.status_code == 200 and "Not valid JSON" in response.content.decode()


def test_it_adds_a_connection_through_the_service(operator_client, world):
    url = reverse("admin:connections_connection_add") + "?type=http_api_key"
    response = operator_client.post(url, api_key_form(project=str(world.project.pk), name="partner-api",
                                                      cfg_api_key="partner-secret-value"))
    assert response.status_code == 302, response.content.decode()[:3000]
    connection = Connection.objects.get(project=world.project, name="partner-api")
    assert connection.type == "http_api_key" and connection.status == "active"
    assert connection.config["api_key"] == "partner-secret-value"
    assert connection.created_by == "user:operator"
    assert connection.config_changes.count() == 1


def test_add_requires_the_secret_and_a_unique_name(operator_client, world):
    url = reverse("admin:connections_connection_add") + "?type=http_api_key"
    response = operator_client.post(url, api_key_form(project=str(world.project.pk), name="billing-api"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "already exists" in body and "This field is required" in body


def test_it_adds_an_oauth2_connection_waiting_for_consent(operator_client, world, outsider_project):
    url = reverse("admin:connections_connection_add") + "?type=oauth2"
    form = {"project": str(world.project.pk), "name": "crm-2", "provider": str(world.provider.pk),
            "cfg_url": "https://crm.example.com", "cfg_scopes": "contacts.read, deals.read",
            "config_changes-TOTAL_FORMS": "0", "config_changes-INITIAL_FORMS": "0"}
    response = operator_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    connection = Connection.objects.get(name="crm-2")
    assert connection.status == "incomplete" and connection.provider == world.provider
    assert connection.config["scopes"] == ["contacts.read", "deals.read"]
    # A provider of another project is refused.
    response = operator_client.post(url, {**form, "name": "crm-3", "project": str(outsider_project.pk)})
    assert response.status_code == 200 and "another project" in response.content.decode()


def test_editing_an_oauth2_connection_keeps_its_tokens(operator_client, world):
    connection = world.connections["oauth2"]
    response = operator_client.post(change_url(connection), {
        "cfg_url": "https://crm.example.com/v2", "cfg_scopes": "a",
        "config_changes-TOTAL_FORMS": "0", "config_changes-INITIAL_FORMS": "0",
    })
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.config["access_token"] == CANARIES["access_token"]
    assert connection.config["refresh_token"] == CANARIES["refresh_token"]
    assert connection.config["url"] == "https://crm.example.com/v2"


def test_stored_oauth2_tokens_never_follow_a_new_origin(operator_client, world):
    connection = world.connections["oauth2"]
    response = operator_client.post(change_url(connection), {
        "cfg_url": "https://crm2.example.com", "cfg_scopes": "a",
        "config_changes-TOTAL_FORMS": "0", "config_changes-INITIAL_FORMS": "0",
    })
    assert response.status_code == 200  # the form again, with the error
    assert "url changed" in response.content.decode()
    connection.refresh_from_db()
    assert connection.config["url"] == "https://crm.example.com"


def test_delete_is_refused_while_a_version_references_the_connection(operator_client, world):
    connection = world.connections["http_api_key"]
    delete_url = reverse("admin:connections_connection_delete", args=[connection.pk])
    response = operator_client.post(delete_url, {"post": "yes"})
    assert response.status_code == 302
    assert any("cannot be deleted" in m and "“invoices” v1" in m for m in messages_of(response))
    assert Connection.objects.filter(pk=connection.pk).exists()

    response = changelist_action(operator_client, reverse(CHANGELIST), "delete_selected", [connection.pk])
    body = response.content.decode()
    assert "workflow “invoices” version 1" in body  # the protected list names the versions
    response = changelist_action(operator_client, reverse(CHANGELIST), "delete_selected", [connection.pk], post="yes")
    assert Connection.objects.filter(pk=connection.pk).exists()


def test_delete_works_when_nothing_references_the_connection(operator_client, world):
    connection = world.connections["openai"]
    response = operator_client.post(reverse("admin:connections_connection_delete", args=[connection.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Connection.objects.filter(pk=connection.pk).exists()


def test_the_test_action_reports_the_status_code_only(operator_client, world):
    with HttpStub(lambda r: StubResponse(200, {"echo": dict(r.headers)})) as stub:
        connection = world.connections["http_api_key"]
        Connection.objects.filter(pk=connection.pk).update(config={**connection.config, "url": f"{stub.url}/v1"})
        response = changelist_action(operator_client, reverse(CHANGELIST), "test_connections", [connection.pk])
        assert response.status_code == 302
        assert messages_of(response) == ["billing-api: HTTP 200"]
        assert stub.requests[0].method == "GET" and stub.requests[0].path == "/v1"
        assert stub.requests[0].headers["Authorization"] == f"Bearer {CANARIES['shared_api_key']}"


def test_the_test_action_reports_rejected_credentials(operator_client, world):
    with HttpStub(lambda r: StubResponse(401, {"error": f"bad key {r.headers.get('X-Key')}"})) as stub:
        openai = world.connections["openai"]
        Connection.objects.filter(pk=openai.pk).update(config={**openai.config, "base_url": f"{stub.url}/v1"})
        response = changelist_action(operator_client, reverse(CHANGELIST), "test_connections", [openai.pk])
        assert messages_of(response) == ["llm: HTTP 401: the server rejected the credentials"]
        assert stub.requests[0].path == "/v1/models"


def test_the_test_action_covers_every_type_without_leaking(operator_client, world, settings):
    pg = world.connections["postgresql"]
    Connection.objects.filter(pk=pg.pk).update(config={**pg.config, "host": "127.0.0.1", "port": 1})
    pks = [c.pk for c in world.connections.values()] + [world.links["user-42"].connection_id]
    response = changelist_action(operator_client, reverse(CHANGELIST), "test_connections", pks)
    found = messages_of(response)
    assert len(found) == len(pks)
    text = "\n".join(found)
    assert "crm: access token valid for another" in text
    assert "warehouse: could not connect" in text
    assert_no_secret(text, world.secrets)


def test_the_test_action_goes_through_the_network_guard(operator_client, world, settings):
    settings.ALLOW_PRIVATE_NETWORK_TARGETS = False
    with HttpStub() as stub:
        connection = world.connections["http_api_key"]
        Connection.objects.filter(pk=connection.pk).update(config={**connection.config, "url": stub.url})
        response = changelist_action(operator_client, reverse(CHANGELIST), "test_connections", [connection.pk])
        assert "refused by the network guard" in messages_of(response)[0]
        assert stub.requests == []


@pytest.mark.parametrize("new_secret, expected", [("", CANARIES["client_secret"]), ("new-client-secret", "new-client-secret")])
def test_oauth_provider_client_secret_is_write_only(operator_client, world, new_secret, expected):
    provider = world.provider
    url = reverse("admin:connections_oauthprovider_change", args=[provider.pk])
    body = operator_client.get(url).content.decode()
    assert CANARIES["client_secret"] not in body and "A client secret is stored." in body
    response = operator_client.post(url, {
        "name": provider.name, "authorize_url": provider.authorize_url, "token_url": provider.token_url,
        "revoke_url": "", "client_id": "acme-client-2", "new_client_secret": new_secret, "scopes": '["a"]', "pkce": "on",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = OAuthProvider.objects.get(pk=provider.pk)
    assert provider.client_secret == expected and provider.client_id == "acme-client-2" and provider.scopes == ["a"]


def test_oauth_provider_is_added_with_a_secret(operator_client, world):
    response = operator_client.post(reverse("admin:connections_oauthprovider_add"), {
        "project": str(world.project.pk), "name": "Other SSO", "authorize_url": "https://o.example.com/a",
        "token_url": "https://o.example.com/t", "revoke_url": "", "client_id": "o", "new_client_secret": "o-secret",
        "scopes": "[]", "pkce": "on",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    assert OAuthProvider.objects.get(name="Other SSO").client_secret == "o-secret"


# --- SPEC §12: every http header/param/data value is write-only; credential-bearing connections fix their origin


def _http_form(**overrides) -> dict:
    data = {"cfg_url": "https://api.honeycomb.example", "cfg_method": "GET", "cfg_headers": "{}", "cfg_params": "{}",
            "cfg_data": "", "cfg_parameters": "", "config_changes-TOTAL_FORMS": "0",
            "config_changes-INITIAL_FORMS": "0"}
    data.update(overrides)
    return data


def test_an_ordinary_looking_header_value_is_never_shown_in_the_list_or_the_change_page(operator_client, world):
    team = "hc-team-key-0a1b2c3d4e5f"
    url = reverse("admin:connections_connection_add") + "?type=http"
    response = operator_client.post(url, _http_form(project=str(world.project.pk), name="honeycomb",
                                                    cfg_headers=json.dumps({"X-Honeycomb-Team": team}),
                                                    cfg_params=json.dumps({"appid": "owm-appid-9f8e7d6c"})))
    assert response.status_code == 302, response.content.decode()[:3000]
    connection = Connection.objects.get(name="honeycomb")
    assert connection.config["headers"] == {"X-Honeycomb-Team": team}
    for page in (reverse(CHANGELIST), change_url(connection), reverse(CHANGELIST) + "?q=honeycomb"):
        body = operator_client.get(page).content.decode()
        assert team not in body and "owm-appid" not in body
    body = operator_client.get(change_url(connection)).content.decode()
    assert "X-Honeycomb-Team" in body and MASK in body
    # Saving the page as shown keeps the stored values.
    response = operator_client.post(change_url(connection), _http_form(
        cfg_headers=json.dumps({"X-Honeycomb-Team": MASK}), cfg_params=json.dumps({"appid": MASK})))
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.config["headers"] == {"X-Honeycomb-Team": team}
    assert connection.config["params"] == {"appid": "owm-appid-9f8e7d6c"}


@pytest.mark.parametrize("type_, form", [
    ("http", _http_form(cfg_url="", cfg_headers=json.dumps({"X-Team": "t-0123456789"}))),
    ("http", _http_form(cfg_url="https://{tenant}.example.com/", cfg_headers=json.dumps({"X-Team": "t-0123456789"}))),
    ("http", _http_form(cfg_url="https://user:pw@api.example.com/")),
    ("http_api_key", api_key_form(cfg_url="https://api.example.com:{port}/", cfg_api_key="k-0123456789")),
    ("oauth2", {"cfg_url": "", "cfg_scopes": "a", "config_changes-TOTAL_FORMS": "0",
                "config_changes-INITIAL_FORMS": "0"}),
])
def test_the_add_form_refuses_an_unpinned_or_templated_origin(operator_client, world, type_, form):
    url = reverse("admin:connections_connection_add") + f"?type={type_}"
    data = {**form, "project": str(world.project.pk), "name": "unpinned"}
    if type_ == "oauth2":
        data["provider"] = str(world.provider.pk)
    response = operator_client.post(url, data)
    assert response.status_code == 200
    assert not Connection.objects.filter(name="unpinned").exists()
    assert "errorlist" in response.content.decode()
