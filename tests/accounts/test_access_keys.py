"""Access keys: digest and preview only, constant-time verify, expiry and revocation, scope."""

from __future__ import annotations

import hmac
import re
from datetime import timedelta

import pytest
from django.test import RequestFactory
from django.utils import timezone
from rest_framework import exceptions

from apps.accounts.authentication import AccessKeyAuthentication, CanUseApp, KeyPrincipal, bearer_token
from apps.accounts.models import ACCESS_KEY_PREFIX, AccessKey, digest_access_key
from apps.accounts.selectors import LAST_USED_RESOLUTION, access_key_authenticate
from apps.accounts.services import access_key_create, project_get_or_create
from tests import factories
from tests.core.rawsql import raw_database_text, raw_table_text

pytestmark = pytest.mark.django_db


def key_for(raw: str) -> AccessKey:
    return AccessKey.objects.get(digest=digest_access_key(raw))


class TestCreate:
    def test_the_key_has_the_prefix_and_64_random_characters(self, project):
        key, raw = access_key_create(organization=project.organization, project=project, name="ci", actor="user:alice")
        assert re.fullmatch(r"dynamiq_acc_[A-Za-z0-9]{64}", raw)
        assert key.name == "ci" and key.created_by == "user:alice" and key.project == project
        other = factories.make_key(project)
        assert other != raw

    def test_only_a_digest_and_a_preview_are_stored(self, project):
        raw = factories.make_key(project)
        key = key_for(raw)
        assert key.digest == digest_access_key(raw) and len(key.digest) == 128
        assert key.preview != raw
        assert key.preview == f"{raw[:16]}…{raw[-4:]}"
        # Neither the key nor its random part is in any column of any table.
        random_part = raw[len(ACCESS_KEY_PREFIX):]
        for text in (raw_table_text(AccessKey._meta.db_table), raw_database_text()):
            assert raw not in text and random_part not in text
            assert random_part[4:-4] not in text

    def test_a_project_of_another_organization_is_refused(self, project, outsider_project):
        with pytest.raises(ValueError):
            access_key_create(organization=project.organization, project=outsider_project)
        assert not AccessKey.objects.exists()

    def test_project_get_or_create_is_idempotent(self, db):
        first = project_get_or_create(organization_name="Acme", project_name="Billing")
        again = project_get_or_create(organization_name="Acme", project_name="Billing")
        assert first == again


class TestVerify:
    def test_it_authenticates_a_valid_key(self, project, owner_key):
        key = access_key_authenticate(raw_key=owner_key)
        assert key is not None and key.project == project

    def test_matches_compares_in_constant_time(self, project, owner_key, monkeypatch):
        calls = []
        original = hmac.compare_digest

        def spy(a, b):
            calls.append((a, b))
            return original(a, b)

        monkeypatch.setattr("apps.accounts.models.hmac.compare_digest", spy)
        key = key_for(owner_key)
        assert key.matches(owner_key) is True
        assert key.matches(owner_key[:-1] + ("x" if owner_key[-1] != "x" else "y")) is False
        assert calls[0] == (key.digest, digest_access_key(owner_key))
        assert len(calls) == 2
        # The authentication path goes through it too.
        calls.clear()
        assert access_key_authenticate(raw_key=owner_key) == key
        assert calls == [(key.digest, digest_access_key(owner_key))]

    @pytest.mark.parametrize(
        "raw",
        ["", "dynamiq_acc_", "dynamiq_acc_unknown", "sk-live-123", "dynamiq_acc_" + "a" * 300],
        ids=["empty", "prefix-only", "unknown", "not-an-access-key", "overlong"],
    )
    def test_unknown_or_malformed_keys_are_rejected(self, owner_key, raw):
        assert access_key_authenticate(raw_key=raw) is None

    def test_an_expired_key_is_rejected(self, project):
        past = timezone.now() - timedelta(seconds=1)
        _, raw = access_key_create(organization=project.organization, project=project, expires_at=past)
        assert access_key_authenticate(raw_key=raw) is None
        assert key_for(raw).last_used_at is None

    def test_a_key_that_expires_later_works(self, project):
        _, raw = access_key_create(organization=project.organization, project=project,
                                   expires_at=timezone.now() + timedelta(days=1))
        assert access_key_authenticate(raw_key=raw) is not None

    def test_a_revoked_key_is_rejected(self, project, owner_key):
        AccessKey.objects.filter(digest=digest_access_key(owner_key)).update(revoked_at=timezone.now())
        assert access_key_authenticate(raw_key=owner_key) is None

    def test_last_used_at_is_recorded_and_throttled(self, project, owner_key):
        assert key_for(owner_key).last_used_at is None
        before = timezone.now()
        access_key_authenticate(raw_key=owner_key)
        first = key_for(owner_key).last_used_at
        assert first is not None and first >= before

        # Within the resolution: no write.
        access_key_authenticate(raw_key=owner_key)
        assert key_for(owner_key).last_used_at == first

        # Older than the resolution: written again.
        stale = timezone.now() - LAST_USED_RESOLUTION - timedelta(seconds=1)
        AccessKey.objects.filter(digest=digest_access_key(owner_key)).update(last_used_at=stale)
        access_key_authenticate(raw_key=owner_key)
        assert key_for(owner_key).last_used_at > stale + LAST_USED_RESOLUTION

    def test_last_used_at_needs_one_query_when_fresh(self, owner_key, django_assert_num_queries):
        access_key_authenticate(raw_key=owner_key)
        with django_assert_num_queries(1):
            access_key_authenticate(raw_key=owner_key)


class TestScope:
    def test_a_project_key_acts_in_its_project_only(self, project, teammate_project, outsider_project, owner_key):
        key = key_for(owner_key)
        assert not key.is_org_wide
        assert key.can_act_in(project)
        assert not key.can_act_in(teammate_project)
        assert not key.can_act_in(outsider_project)

    def test_an_org_wide_key_acts_in_every_project_of_its_organization(
        self, project, teammate_project, outsider_project, org_key
    ):
        key = key_for(org_key)
        assert key.is_org_wide and key.project is None
        assert key.can_act_in(project) and key.can_act_in(teammate_project)
        assert not key.can_act_in(outsider_project)


class TestAuthenticationClass:
    def _request(self, header: str | None):
        factory = RequestFactory()
        return factory.get("/", **({"HTTP_AUTHORIZATION": header} if header else {}))

    def test_a_valid_key_authenticates(self, owner_key):
        user, key = AccessKeyAuthentication().authenticate(self._request(f"Bearer {owner_key}"))
        assert isinstance(user, KeyPrincipal) and user.is_authenticated
        assert key == key_for(owner_key)
        assert owner_key not in str(user)

    def test_no_bearer_means_no_opinion(self, db):
        assert AccessKeyAuthentication().authenticate(self._request(None)) is None
        assert AccessKeyAuthentication().authenticate(self._request("Basic dXNlcjpwYXNz")) is None
        assert bearer_token(self._request("Bearer   ")) is None

    @pytest.mark.parametrize("state", ["expired", "revoked", "unknown", "not-an-access-key"])
    def test_unusable_keys_get_401(self, project, owner_key, state):
        raw = owner_key
        if state == "expired":
            AccessKey.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
        elif state == "revoked":
            AccessKey.objects.update(revoked_at=timezone.now())
        elif state == "unknown":
            raw = AccessKey.generate()
        else:
            raw = "sk-something-else"
        with pytest.raises(exceptions.AuthenticationFailed):
            AccessKeyAuthentication().authenticate(self._request(f"Bearer {raw}"))

    def test_can_use_app(self, project, teammate_project, owner_key, teammate_key, org_key):
        private = factories.make_app(project, name="private")
        public = factories.make_app(project, name="public", access_type="public")
        permission = CanUseApp()

        def request(app, raw=None):
            req = self._request(None)
            req.app = app
            req.auth = access_key_authenticate(raw_key=raw) if raw else None
            return req

        assert permission.has_permission(request(private, owner_key), None)
        assert permission.has_permission(request(private, org_key), None)
        assert not permission.has_permission(request(private, teammate_key), None)
        class AnonymousReads:  # a view that opens GET to anonymous callers of public Apps
            anonymous_methods = ("GET",)

        assert permission.has_permission(request(public), AnonymousReads())
        with pytest.raises(exceptions.NotAuthenticated):  # public, but the view acts as an end user
            permission.has_permission(request(public), None)
        with pytest.raises(exceptions.NotAuthenticated):
            permission.has_permission(request(private), AnonymousReads())
