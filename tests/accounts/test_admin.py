"""Access keys in the admin: shown once, scoped to the project's organization, revoked after confirmation."""

from __future__ import annotations

import re

from django.urls import reverse

from apps.accounts.models import AccessKey
from apps.accounts.selectors import access_key_authenticate
from tests.support.admin import changelist_action

KEY_RE = re.compile(r"dynamiq_acc_[A-Za-z0-9]{64}")


# ---- access keys ---------------------------------------------------------------------------------

def test_access_key_is_shown_exactly_once(operator_client, world):
    response = operator_client.post(reverse("admin:accounts_accesskey_add"), {
        "organization": str(world.project.organization_id), "project": str(world.project.pk), "name": "deploy-bot",
    })
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    keys = set(KEY_RE.findall(response.content.decode()))
    assert len(keys) == 1
    raw = keys.pop()
    key = access_key_authenticate(raw_key=raw)
    assert key is not None and key.name == "deploy-bot" and key.project_id == world.project.pk
    assert key.created_by == "user:operator"
    # Never again: not in the list, the change page, or any message/cookie.
    for url in (reverse("admin:accounts_accesskey_changelist"), reverse("admin:accounts_accesskey_change", args=[key.pk])):
        body = operator_client.get(url).content.decode()
        assert raw not in body and key.preview in body
    assert raw not in str(operator_client.cookies)


def test_org_wide_key_and_project_of_another_org_is_refused(operator_client, world, outsider_project):
    url = reverse("admin:accounts_accesskey_add")
    response = operator_client.post(url, {"organization": str(world.project.organization_id),
                                          "project": str(outsider_project.pk), "name": "x"})
    assert response.status_code == 200 and "another organization" in response.content.decode()
    response = operator_client.post(url, {"organization": str(world.project.organization_id), "name": "org"})
    raw = KEY_RE.search(response.content.decode()).group(0)
    assert access_key_authenticate(raw_key=raw).is_org_wide


def test_revoke_action_confirms_then_revokes(operator_client, world):
    key = access_key_authenticate(raw_key=world.raw_key)
    url = reverse("admin:accounts_accesskey_changelist")
    response = changelist_action(operator_client, url, "revoke_keys", [key.pk])
    assert response.status_code == 200 and "Revoke them?" in response.content.decode()
    assert access_key_authenticate(raw_key=world.raw_key) is not None
    response = changelist_action(operator_client, url, "revoke_keys", [key.pk], post="yes")
    assert response.status_code == 302
    assert access_key_authenticate(raw_key=world.raw_key) is None
    assert AccessKey.objects.get(pk=key.pk).revoked_at is not None
