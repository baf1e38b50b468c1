"""Connection services: create, update config (ID, name and type kept; history without values), delete."""

from __future__ import annotations

import inspect

import pytest
from django.db import transaction
from django.db.models import ProtectedError

from apps.connections.models import Connection, ConnectionConfigChange
from apps.connections.services import (
    connection_create,
    connection_update_config,
    oauth_provider_create,
    oauth_provider_update,
)
from apps.core.crypto import keyed_fingerprint
from apps.core.errors import BadRequest, Conflict
from apps.deployments.services import connection_delete
from apps.engine.connection_types import MASK
from tests import factories
from tests.conftest import assert_no_canary
from tests.core.rawsql import raw_database_text, raw_table_text

pytestmark = pytest.mark.django_db

NEW_KEY = "canary-rotated-key-1a2b3c4d5e"  # a second secret that must not leak either


@pytest.fixture
def billing(project):
    return factories.make_connection(project)


def history(connection) -> list[ConnectionConfigChange]:
    return list(ConnectionConfigChange.objects.filter(connection=connection).order_by("changed_at", "id"))


class TestCreate:
    def test_it_creates_a_shared_connection_with_a_history_entry(self, project, canaries):
        conn = connection_create(
            project=project, name=" billing-api ", type="http_api_key", actor="user:alice",
            config={"url": "https://billing.example.com", "api_key": canaries["shared_api_key"]},
        )
        assert conn.name == "billing-api" and conn.type == "http_api_key"
        assert conn.status == Connection.Status.ACTIVE and conn.owner == Connection.Owner.PROJECT
        assert conn.created_by == "user:alice"
        assert conn.config == {"url": "https://billing.example.com", "api_key": canaries["shared_api_key"],
                               "header": "Authorization", "prefix": "Bearer "}
        [entry] = history(conn)
        assert entry.actor == "user:alice"
        assert entry.changed_fields == ["api_key", "header", "prefix", "url"]
        assert entry.fingerprint == keyed_fingerprint(conn.config)

    def test_dynamiq_aliases_are_accepted(self, project):
        conn = connection_create(project=project, name="h", type="dynamiq.connections.Http",
                                 config={"url": "https://a.example.com"})
        assert conn.type == "http"

    def test_it_validates(self, project):
        with pytest.raises(BadRequest) as exc:
            connection_create(project=project, name="x", type="nope", config={})
        assert "type" in exc.value.details
        with pytest.raises(BadRequest) as exc:
            connection_create(project=project, name=" ", type="http", config={})
        assert exc.value.details == {"name": ["this field is required"]}
        with pytest.raises(BadRequest) as exc:
            connection_create(project=project, name="x", type="http_api_key", config={"url": "ftp://x"})
        assert set(exc.value.details["config"]) == {"url", "api_key"}

    def test_names_are_unique_per_project(self, project, teammate_project, billing):
        with pytest.raises(Conflict):
            factories.make_connection(project)
        factories.make_connection(teammate_project)  # another project may reuse the name

    def test_oauth2_starts_incomplete_until_consent(self, project):
        provider = oauth_provider_create(project=project, name="idp", authorize_url="https://idp.example.com/a",
                                         token_url="https://idp.example.com/t", client_id="c")
        conn = connection_create(project=project, name="crm", type="oauth2", config={"url": "https://crm.example.com"},
                                 provider=provider)
        assert conn.status == Connection.Status.INCOMPLETE
        assert conn.config["provider_id"] == str(provider.id)


class TestUpdateConfig:
    def test_it_keeps_the_id_name_and_type(self, billing):
        before = (billing.pk, billing.name, billing.type, billing.created_at)
        updated = connection_update_config(
            connection=billing, config={"url": "https://billing-v2.example.com", "api_key": NEW_KEY}, actor="user:alice"
        )
        fresh = Connection.objects.get(pk=billing.pk)
        assert (fresh.pk, fresh.name, fresh.type, fresh.created_at) == before
        assert updated.pk == billing.pk
        assert fresh.config["url"] == "https://billing-v2.example.com" and fresh.config["api_key"] == NEW_KEY
        assert fresh.updated_by == "user:alice"
        assert Connection.objects.count() == 1

    def test_it_records_who_which_fields_and_a_fingerprint_never_a_value(self, billing, canaries):
        connection_update_config(connection=billing, config={"url": "https://billing.example.com", "api_key": NEW_KEY},
                                 actor="access_key:dynamiq_acc_ab12…wxyz")
        first, change = history(billing)
        assert change.actor == "access_key:dynamiq_acc_ab12…wxyz"
        assert change.changed_fields == ["api_key"]
        assert len(change.fingerprint) == 16 and change.fingerprint != first.fingerprint
        assert change.changed_at is not None
        # The history table never holds a value: neither the old secret nor the new one.
        text = raw_table_text(ConnectionConfigChange._meta.db_table)
        assert_no_canary(text)
        assert NEW_KEY not in text and "billing.example.com" not in text

    def test_the_fingerprint_is_keyed_by_secret_key(self, billing, settings):
        fingerprint = keyed_fingerprint(billing.config)
        settings.SECRET_KEY = "another-secret-key-" + "x" * 40
        assert keyed_fingerprint(billing.config) != fingerprint

    @pytest.mark.parametrize("kept", ["", MASK, None], ids=["blank", "masked", "absent"])
    def test_blank_or_masked_secrets_keep_the_stored_value(self, billing, canaries, kept):
        config = {"url": "https://billing.example.com", "prefix": "Token "}
        if kept is not None:
            config["api_key"] = kept
        connection_update_config(connection=billing, config=config, actor="user:alice")
        fresh = Connection.objects.get(pk=billing.pk)
        assert fresh.config["api_key"] == canaries["shared_api_key"]
        assert fresh.config["prefix"] == "Token "
        assert history(billing)[-1].changed_fields == ["prefix"]

    def test_masked_header_values_keep_the_stored_value(self, project, canaries):
        conn = connection_create(project=project, name="partner", type="http", config={
            "url": "https://partner.example.com", "headers": {"Authorization": f"Bearer {canaries['header_secret']}"},
        })
        connection_update_config(connection=conn, config={
            "url": "https://partner.example.com", "headers": {"Authorization": MASK, "Accept": "application/json"},
        })
        assert Connection.objects.get(pk=conn.pk).config["headers"] == {
            "Authorization": f"Bearer {canaries['header_secret']}", "Accept": "application/json",
        }

    def test_name_and_type_cannot_be_changed(self, billing):
        # The service has no way to change them...
        params = inspect.signature(connection_update_config).parameters
        assert set(params) == {"connection", "config", "actor"}
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
        with pytest.raises(TypeError):
            connection_update_config(connection=billing, config={}, name="renamed")  # type: ignore[call-arg]
        # ...and name/type smuggled into the config are unknown config fields.
        for smuggled in ({"name": "renamed"}, {"type": "openai"}):
            with pytest.raises(BadRequest) as exc:
                connection_update_config(connection=billing, config={"url": "https://billing.example.com", **smuggled})
            assert "unknown field(s)" in exc.value.details["config"]["config"][0]
        fresh = Connection.objects.get(pk=billing.pk)
        assert (fresh.name, fresh.type) == ("billing-api", "http_api_key")
        assert len(history(billing)) == 1  # refused edits leave no history

    def test_it_validates_the_new_config(self, billing, canaries):
        with pytest.raises(BadRequest) as exc:
            connection_update_config(connection=billing, config={"url": "not a url", "api_key": NEW_KEY})
        assert exc.value.details["config"] == {"url": ["must be an http(s) URL"]}
        with pytest.raises(BadRequest):
            connection_update_config(connection=billing, config=["not", "an", "object"])  # type: ignore[arg-type]
        assert Connection.objects.get(pk=billing.pk).config["api_key"] == canaries["shared_api_key"]

    def test_new_credentials_reactivate_a_flagged_shared_connection(self, billing):
        Connection.objects.filter(pk=billing.pk).update(status=Connection.Status.UNAUTHORIZED)
        billing.refresh_from_db()
        connection_update_config(connection=billing, config={"url": "https://billing.example.com", "api_key": NEW_KEY})
        assert Connection.objects.get(pk=billing.pk).status == Connection.Status.ACTIVE

    def test_oauth2_tokens_cannot_be_edited(self, project, canaries):
        provider = oauth_provider_create(project=project, name="idp", authorize_url="https://idp.example.com/a",
                                         token_url="https://idp.example.com/t", client_id="c")
        conn = connection_create(project=project, name="crm", type="oauth2", config={"url": "https://crm.example.com"},
                                 provider=provider)
        conn.config = {**conn.config, "access_token": canaries["access_token"]}
        conn.save(update_fields=["config"])
        connection_update_config(connection=conn, config={"url": "https://crm.example.com", "access_token": "forged",
                                                          "provider_id": "00000000-0000-0000-0000-000000000000"})
        fresh = Connection.objects.get(pk=conn.pk)
        assert fresh.config["access_token"] == canaries["access_token"]
        assert fresh.config["provider_id"] == str(provider.id)
        assert fresh.config["url"] == "https://crm.example.com"


@pytest.mark.parametrize("type_", ["http_api_key", "oauth2"])
def test_a_config_that_is_not_an_object_is_refused(project, type_):
    with pytest.raises(BadRequest) as exc:
        connection_create(project=project, name="x", type=type_, config=["api_key"])  # type: ignore[arg-type]
    assert exc.value.details == {"config": {"config": ["must be an object"]}}


def test_an_oauth2_config_update_that_is_not_an_object_is_refused(project):
    provider = oauth_provider_create(project=project, name="idp", authorize_url="https://idp.example.com/a",
                                     token_url="https://idp.example.com/t", client_id="c")
    conn = connection_create(project=project, name="crm", type="oauth2", config={"url": "https://crm.example.com"},
                             provider=provider)
    with pytest.raises(BadRequest):
        connection_update_config(connection=conn, config="url=https://x")  # type: ignore[arg-type]


class TestDelete:
    def _reference(self, project, connection):
        workflow = factories.make_workflow(project)
        return factories.make_version(workflow, factories.definition(
            factories.http_node("call", ref={"id": str(connection.id)}, url="https://billing.example.com/x"),
        ))

    def test_an_unreferenced_connection_is_deleted(self, billing):
        connection_delete(connection=billing)
        assert not Connection.objects.filter(pk=billing.pk).exists()
        assert not ConnectionConfigChange.objects.filter(connection_id=billing.pk).exists()

    def test_it_is_refused_while_a_version_references_it(self, project, billing):
        version = self._reference(project, billing)
        app = factories.make_app(project, version=version)
        with pytest.raises(Conflict) as exc:
            connection_delete(connection=billing)
        assert exc.value.details["versions"] == [{
            "workflow_id": str(version.workflow_id), "workflow": "invoices", "version_id": str(version.id), "number": 1,
        }]
        assert exc.value.details["apps"] == [{"app_id": str(app.id), "app": app.name}]
        assert Connection.objects.filter(pk=billing.pk).exists()

    def test_the_database_protects_a_referenced_connection(self, project, billing):
        # Versions are immutable, so a referenced connection stays undeletable: the FK says PROTECT.
        self._reference(project, billing)
        with pytest.raises(ProtectedError), transaction.atomic():
            Connection.objects.filter(pk=billing.pk).delete()
        assert Connection.objects.filter(pk=billing.pk).exists()

    def test_a_new_version_without_the_reference_does_not_free_it(self, project, billing):
        version = self._reference(project, billing)
        factories.make_version(version.workflow, factories.definition(
            factories.http_node("call", ref=None, url="https://public.example.com/x"),
        ))
        with pytest.raises(Conflict):
            connection_delete(connection=billing)


class TestOAuthProvider:
    def test_a_blank_or_masked_client_secret_keeps_the_stored_one(self, project, canaries):
        provider = oauth_provider_create(project=project, name="idp", authorize_url="https://idp.example.com/a",
                                         token_url="https://idp.example.com/t", client_id="c",
                                         client_secret=canaries["client_secret"])
        for kept in ("", MASK, None):
            oauth_provider_update(provider=provider, client_secret=kept, client_id="c2")
            provider.refresh_from_db()
            assert provider.client_secret == canaries["client_secret"]
        assert provider.client_id == "c2"
        assert_no_canary(raw_database_text())

    def test_unknown_fields_are_refused(self, project):
        provider = oauth_provider_create(project=project, name="idp", authorize_url="https://idp.example.com/a",
                                         token_url="https://idp.example.com/t", client_id="c")
        with pytest.raises(BadRequest) as exc:
            oauth_provider_update(provider=provider, project=None)
        assert exc.value.details == {"project": ["not allowed"]}


@pytest.mark.parametrize("header, param", [("Ocp-Apim-Subscription-Key", "key"), ("X-Functions-Key", "access_key")])
def test_key_style_names_are_write_only(project, header, param):
    """Found in review: these common API-key names were shown in clear and not masked in runs."""
    from apps.engine.connection_types import MASK

    conn = connection_create(project=project, name=f"kv-{param}", type="http", config={
        "url": "https://api.example.com", "headers": {header: "secret-value-1234", "Accept": "application/json"},
        "params": {param: "secret-value-5678", "format": "json"},
    })
    shown = conn.redacted_config()
    # Every value is write-only now (SPEC §12), the ordinary-looking ones too.
    assert shown["headers"] == {header: MASK, "Accept": MASK}
    assert shown["params"] == {param: MASK, "format": MASK}


# --- SPEC §12: every http header/param/data value is secret; credential-bearing connections fix their origin ---


def _provider(project):
    return oauth_provider_create(project=project, name="idp", authorize_url="https://idp.example.com/a",
                                 token_url="https://idp.example.com/t", client_id="c")


def test_every_http_header_param_and_data_value_is_write_only_whatever_its_name(project):
    conn = connection_create(project=project, name="honeycomb", type="http", config={
        "url": "https://api.honeycomb.example", "headers": {"X-Honeycomb-Team": "hc-team-key-0a1b2c3d"},
        "params": {"appid": "owm-appid-9f8e7d6c"}, "data": {"team": "blue-team-4711", "count": 3},
    })
    shown = conn.redacted_config()
    assert shown["headers"] == {"X-Honeycomb-Team": MASK}
    assert shown["params"] == {"appid": MASK}
    assert shown["data"] == {"team": MASK, "count": MASK}
    assert "hc-team-key" not in repr(shown) and "owm-appid" not in repr(shown)


def test_masked_values_of_any_name_keep_the_stored_value_and_an_unknown_masked_key_is_refused(project):
    conn = connection_create(project=project, name="hc", type="http", config={
        "url": "https://api.honeycomb.example", "headers": {"X-Honeycomb-Team": "hc-team-key-0a1b2c3d"},
    })
    connection_update_config(connection=conn, config={
        "url": "https://api.honeycomb.example/v2", "headers": {"X-Honeycomb-Team": MASK, "X-Dataset": "prod"},
    })
    assert Connection.objects.get(pk=conn.pk).config["headers"] == {
        "X-Honeycomb-Team": "hc-team-key-0a1b2c3d", "X-Dataset": "prod"}
    # The mask for a key with no stored value would be stored (and sent) literally: refused.
    with pytest.raises(BadRequest) as exc:
        connection_update_config(connection=conn, config={
            "url": "https://api.honeycomb.example", "headers": {"X-Honeycomb-Team": MASK, "X-New": MASK}})
    assert "X-New" in exc.value.details["config"]["headers"][0]
    with pytest.raises(BadRequest):
        connection_create(project=project, name="hc2", type="http", config={
            "url": "https://api.honeycomb.example", "headers": {"X-Honeycomb-Team": MASK}})


def test_the_destination_rule_covers_every_masked_value(project):
    conn = connection_create(project=project, name="hc", type="http", config={
        "url": "https://api.honeycomb.example", "params": {"appid": "owm-appid-9f8e7d6c"},
    })
    with pytest.raises(BadRequest) as exc:
        connection_update_config(connection=conn, config={"url": "https://attacker.example", "params": {"appid": MASK}})
    assert "re-enter params.appid" in exc.value.details["config"]["params"][0]
    assert Connection.objects.get(pk=conn.pk).config["url"] == "https://api.honeycomb.example"


@pytest.mark.parametrize("type_, config", [
    ("http", {"headers": {"X-Honeycomb-Team": "hc-team-key-0a1b2c3d"}}),
    ("http", {"params": {"appid": "owm-appid-9f8e7d6c"}}),
    ("http", {"data": {"team": "blue-team-4711"}}),
    ("http_api_key", {"api_key": "k-0123456789"}),
    ("oauth2", {}),
])
def test_a_credential_bearing_connection_needs_a_url(project, type_, config):
    provider = _provider(project) if type_ == "oauth2" else None
    with pytest.raises(BadRequest) as exc:
        connection_create(project=project, name="x", type=type_, config=config, provider=provider)
    assert "url" in exc.value.details["config"]
    assert not Connection.objects.filter(name="x").exists()


def test_an_http_connection_with_nothing_secret_needs_no_url(project):
    conn = connection_create(project=project, name="plain", type="http", config={"method": "POST", "parameters": ["id"]})
    assert conn.config.get("url") is None


@pytest.mark.parametrize("url", [
    "https://{host}/v1", "https://api.example.com:{port}/", "https://{sub}.example.com/", "{scheme}://api.example.com/",
    "https://{{ input.host }}/", "https://api.example.com{x}/",
])
@pytest.mark.parametrize("type_", ["http", "http_api_key", "oauth2"])
def test_a_placeholder_in_a_connection_urls_origin_is_refused_at_save(project, url, type_):
    config = {"url": url, "http": {"headers": {"X-Key": "k-0123456789"}}, "http_api_key": {"api_key": "k-0123456789"},
              "oauth2": {}}[type_]
    config = {"url": url, **config}
    with pytest.raises(BadRequest) as exc:
        connection_create(project=project, name="x", type=type_, config=config,
                          provider=_provider(project) if type_ == "oauth2" else None)
    assert "url" in exc.value.details["config"]


def test_a_placeholder_in_a_connection_urls_path_is_allowed(project):
    conn = connection_create(project=project, name="acct", type="http", config={
        "url": "https://api.example.com/accounts/{account_id}?v={version}", "parameters": ["account_id", "version"],
        "headers": {"X-Key": "k-0123456789"}})
    assert conn.config["url"] == "https://api.example.com/accounts/{account_id}?v={version}"


@pytest.mark.parametrize("url", ["https://user:pass@api.example.com/", "https://token@api.example.com/",
                                 "https://:pw@api.example.com/"])
def test_userinfo_in_a_connection_url_is_refused(project, url):
    for type_, extra in (("http", {}), ("http_api_key", {"api_key": "k-0123456789"})):
        with pytest.raises(BadRequest) as exc:
            connection_create(project=project, name="x", type=type_, config={"url": url, **extra})
        assert "user:password@" in exc.value.details["config"]["url"][0]
    with pytest.raises(BadRequest):
        connection_create(project=project, name="x", type="openai", config={"api_key": "sk-x", "base_url": url})


def test_an_edit_may_not_put_a_placeholder_into_the_origin(billing):
    with pytest.raises(BadRequest) as exc:
        connection_update_config(connection=billing, config={"url": "https://{tenant}.billing.example.com"})
    assert "url" in exc.value.details["config"]
