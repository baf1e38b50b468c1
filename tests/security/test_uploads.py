"""Uploads cannot fill the disk (SPEC.md section 12): the whole request is validated before a byte is
stored, each App has a storage quota, anonymous callers of public Apps upload only when the App allows
it, and files no run references are purged after the retention period."""

import json
import os
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone

from apps.deployments.models import App
from apps.runs.files import files_purge_unreferenced
from apps.runs.models import File
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def stored_bytes(media) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(media) for name in names)


def files_app(project, name="Files", **kwargs):
    workflow = factories.make_workflow(project, f"wf-{name}")
    version = factories.make_version(workflow, factories.definition(output={"count": "{{ input.files | length }}"}))
    return factories.make_app(project, name=name, version=version, **kwargs)


def multipart_run(client, app, *, key=None, input=None, files=(b"hello",), path="v1/runs", **fields):
    body = {"input": json.dumps(input if input is not None else {"question": "q"}), **fields,
            "files": [SimpleUploadedFile(f"f{i}.txt", content, "text/plain") for i, content in enumerate(files)]}
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return client.post(f"/apps/{app.id}/{path}", body, format="multipart", **headers)


@pytest.mark.parametrize("path", ["v1/runs", ""])
def test_invalid_input_with_files_stores_nothing(api_client, project, owner_key, media, path):
    app = files_app(project)
    response = multipart_run(api_client, app, key=owner_key, input={"wrong": 1}, files=[b"a" * 1000, b"b" * 1000],
                             path=path)
    assert response.status_code == 400, response.content
    assert File.objects.count() == 0 and stored_bytes(media) == 0


def test_invalid_callbacks_or_unknown_file_ids_with_files_store_nothing(api_client, project, owner_key, media,
                                                                         settings):
    settings.ALLOW_PRIVATE_NETWORK_TARGETS = False  # the callback URL check is the one under test
    app = files_app(project)
    for url in ("not a url", "https://127.0.0.1/callback"):
        bad_callback = multipart_run(api_client, app, key=owner_key, path="", execution_mode="async",
                                     callbacks=json.dumps([{"url": url}]))
        assert bad_callback.status_code == 400, bad_callback.content
    unknown = multipart_run(api_client, app, key=owner_key, file_ids=json.dumps(["00000000-0000-0000-0000-000000000001"]))
    assert unknown.status_code == 404
    assert File.objects.count() == 0 and stored_bytes(media) == 0


def test_a_valid_upload_still_runs(api_client, project, owner_key, media):
    response = multipart_run(api_client, files_app(project), key=owner_key, files=[b"a", b"b"])
    assert response.status_code == 200, response.content
    assert response.json()["output"] == {"count": 2}
    assert File.objects.count() == 2 and stored_bytes(media) == 2


def test_the_quota_refuses_and_stores_nothing(api_client, project, owner_key, media, settings):
    settings.APP_STORAGE_QUOTA_BYTES = 1500
    app = files_app(project)
    assert multipart_run(api_client, app, key=owner_key, files=[b"a" * 1000]).status_code == 200
    refused = multipart_run(api_client, app, key=owner_key, files=[b"b" * 400, b"c" * 400])
    assert refused.status_code == 413
    error = refused.json()["error"]
    assert error["code"] == "payload_too_large" and "1500" in error["message"]
    direct = api_client.post(f"/apps/{app.id}/v1/files", {"file": SimpleUploadedFile("d.txt", b"d" * 600)},
                             format="multipart", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert direct.status_code == 413
    assert File.objects.count() == 1 and stored_bytes(media) == 1000
    # The quota is per App: another App of the project still has room.
    assert multipart_run(api_client, files_app(project, name="Other"), key=owner_key, files=[b"e" * 1000]).status_code == 200


def test_anonymous_uploads_to_a_public_app_need_the_app_to_allow_them(api_client, project, owner_key, media):
    public = files_app(project, name="Public", access_type=App.AccessType.PUBLIC)
    for path in ("v1/runs", ""):
        refused = multipart_run(api_client, public, path=path)
        assert refused.status_code == 401, refused.content
        assert refused.json()["error"]["code"] == "unauthorized"
    refused = api_client.post(f"/apps/{public.id}/v1/files", {"file": SimpleUploadedFile("a.txt", b"a")}, format="multipart")
    assert refused.status_code == 401
    assert File.objects.count() == 0 and stored_bytes(media) == 0
    # Keyed callers may; anonymous ones once the App allows it.
    assert multipart_run(api_client, public, key=owner_key).status_code == 200
    public.allow_anonymous_uploads = True
    public.save()
    assert multipart_run(api_client, public).status_code == 200
    assert File.objects.count() == 2


def test_allow_anonymous_uploads_is_set_through_the_management_api(api_client, project, owner_key):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {owner_key}"}
    created = api_client.post("/v1/apps", {"name": "Uploads", "access_type": "public"}, format="json", **auth)
    assert created.status_code == 201, created.content
    assert created.json()["data"]["allow_anonymous_uploads"] is False
    app_id = created.json()["data"]["id"]
    updated = api_client.patch(f"/v1/apps/{app_id}", {"allow_anonymous_uploads": True}, format="json", **auth)
    assert updated.status_code == 200 and updated.json()["data"]["allow_anonymous_uploads"] is True
    assert App.objects.get(id=app_id).allow_anonymous_uploads is True


def test_purge_removes_only_unreferenced_old_files(api_client, project, owner_key, media, settings):
    settings.UNREFERENCED_FILE_RETENTION_HOURS = 24
    app = files_app(project)
    referenced = multipart_run(api_client, app, key=owner_key, files=[b"kept-by-a-run"])
    assert referenced.status_code == 200
    orphan_old, orphan_new = (
        api_client.post(f"/apps/{app.id}/v1/files", {"file": SimpleUploadedFile(n, n.encode())}, format="multipart",
                        HTTP_AUTHORIZATION=f"Bearer {owner_key}").json()["id"] for n in ("old.txt", "new.txt")
    )
    referenced_id = next(str(f.id) for f in File.objects.exclude(id__in=[orphan_old, orphan_new]))
    day_ago = timezone.now() - timedelta(hours=30)
    File.objects.filter(id__in=[orphan_old, referenced_id]).update(created_at=day_ago)
    before = stored_bytes(media)

    assert files_purge_unreferenced(now=timezone.now()) == 1
    assert set(map(str, File.objects.values_list("id", flat=True))) == {referenced_id, orphan_new}
    assert stored_bytes(media) == before - len(b"old.txt")
    # Later, the new orphan ages past the retention too; the command purges it.
    call_command("purge_files", stdout=open(os.devnull, "w"))
    assert File.objects.count() == 2
    File.objects.filter(id=orphan_new).update(created_at=day_ago)
    call_command("purge_files", stdout=open(os.devnull, "w"))
    assert set(map(str, File.objects.values_list("id", flat=True))) == {referenced_id}


def test_an_upload_flood_stays_within_the_quota(api_client, project, owner_key, media, settings):
    """200 requests of near-maximum files against a quota of ten of them: the stored bytes never pass it."""
    settings.MAX_UPLOAD_BYTES = 4096
    settings.APP_STORAGE_QUOTA_BYTES = 10 * 4000
    app = files_app(project)
    statuses = []
    for i in range(200):
        if i % 2:
            response = multipart_run(api_client, app, key=owner_key, files=[b"x" * 4000])
        else:
            response = api_client.post(f"/apps/{app.id}/v1/files", {"file": SimpleUploadedFile("f", b"y" * 4000)},
                                       format="multipart", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
        statuses.append(response.status_code)
    assert statuses.count(413) == 190
    assert stored_bytes(media) <= settings.APP_STORAGE_QUOTA_BYTES
    assert sum(File.objects.values_list("size", flat=True)) == stored_bytes(media) == 40_000
