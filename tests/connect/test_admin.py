"""End-user links in the admin: revocation deletes the link and its connection; filters."""

from __future__ import annotations

from django.urls import reverse

from apps.connect.models import EndUserLink
from apps.connections.models import Connection
from tests.support.admin import changelist_action

# ---- end-user links ------------------------------------------------------------------------------

def test_revoke_link_action_deletes_the_link_and_its_connection(operator_client, world):
    link = world.links["user-42"]
    url = reverse("admin:connect_enduserlink_changelist")
    response = changelist_action(operator_client, url, "revoke_links", [link.pk])
    assert response.status_code == 200 and "user-42" in response.content.decode()
    assert EndUserLink.objects.filter(pk=link.pk).exists()
    response = changelist_action(operator_client, url, "revoke_links", [link.pk], post="yes")
    assert response.status_code == 302
    assert not EndUserLink.objects.filter(pk=link.pk).exists()
    assert not Connection.objects.filter(pk=link.connection_id).exists()
    assert EndUserLink.objects.filter(pk=world.links["user-43"].pk).exists()


def test_links_filter_by_connection_status(operator_client, world):
    Connection.objects.filter(pk=world.links["user-43"].connection_id).update(status="unauthorized")
    url = reverse("admin:connect_enduserlink_changelist")
    body = operator_client.get(url + "?status=unauthorized").content.decode()
    assert "user-43" in body and "user-42" not in body
    body = operator_client.get(url + "?q=user-42").content.decode()
    assert "user-42" in body and "user-43" not in body
