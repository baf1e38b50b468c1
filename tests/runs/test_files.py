"""`POST /v1/files` and files on runs: owned by the App that received them, exposed as `input.files`."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.runs.models import File, Run
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def files_app(project, name="Files bot"):
    workflow = factories.make_workflow(project, f"wf-{name}")
    version = factories.make_version(workflow, factories.definition(output={
        "names": "{{ input.files | map(attribute='name') | join(',') }}",
        "first": "{{ input.files[0].content if input.files else '' }}",
        "count": "{{ input.files | length }}",
    }))
    return factories.make_app(project, name=name, version=version)


def upload(api_client, app, key, content=b"hello,world\n", name="report.csv", content_type="text/csv"):
    return api_client.post(f"/apps/{app.id}/v1/files", {"file": SimpleUploadedFile(name, content, content_type)},
                           format="multipart", HTTP_AUTHORIZATION=f"Bearer {key}")


def test_it_uploads_a_file(api_client, project, owner_key):
    app = files_app(project)
    response = upload(api_client, app, owner_key)
    assert response.status_code == 201, response.content
    data = response.json()
    assert data == {"id": data["id"], "name": "report.csv", "size": 12, "mime_type": "text/csv"}
    stored = File.objects.get(id=data["id"])
    assert stored.app_id == app.id and stored.file.read() == b"hello,world\n"


def test_it_refuses_a_file_over_the_limit(api_client, project, owner_key, settings):
    settings.MAX_UPLOAD_BYTES = 10
    response = upload(api_client, files_app(project), owner_key, content=b"x" * 11)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert not File.objects.exists()


def test_it_validates_the_upload(api_client, project, owner_key):
    app = files_app(project)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {owner_key}"}
    assert api_client.post(f"/apps/{app.id}/v1/files", {"name": "x"}, format="json", **auth).status_code == 415
    assert api_client.post(f"/apps/{app.id}/v1/files", {"other": "x"}, format="multipart", **auth).status_code == 400
    assert api_client.get(f"/apps/{app.id}/v1/files", **auth).status_code == 405


def test_it_refuses_the_wrong_actor(api_client, project, outsider_key):
    app = files_app(project)
    assert upload(api_client, app, outsider_key).status_code == 403
    response = api_client.post(f"/apps/{app.id}/v1/files", {"file": SimpleUploadedFile("a.txt", b"a")}, format="multipart")
    assert response.status_code == 401


def test_a_run_reads_its_files_through_input_files(api_client, project, owner_key):
    app = files_app(project)
    file_id = upload(api_client, app, owner_key).json()["id"]
    response = api_client.post(f"/apps/{app.id}/v1/runs", {"input": {"question": "q"}, "file_ids": [file_id]},
                               format="json", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 200, response.content
    assert response.json()["output"] == {"names": "report.csv", "first": "hello,world\n", "count": 1}


def test_multipart_files_on_invoke_and_runs_become_files_of_the_app(api_client, project, owner_key):
    app = files_app(project)
    body = {"input": json.dumps({"question": "q"}),
            "files": [SimpleUploadedFile("a.txt", b"alpha", "text/plain"), SimpleUploadedFile("b.bin", b"\x00\x01")]}
    response = api_client.post(f"/apps/{app.id}/", body, format="multipart", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 200, response.content
    assert response.json()["output"] == {"names": "a.txt,b.bin", "first": "alpha", "count": 2}
    assert File.objects.filter(app=app).count() == 2
    body = {"input": json.dumps({"question": "q"}), "files": [SimpleUploadedFile("c.md", b"# c", "text/markdown")]}
    response = api_client.post(f"/apps/{app.id}/v1/runs", body, format="multipart", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.json()["output"]["names"] == "c.md"
    run = Run.objects.get(id=response.json()["id"])
    assert run.file_ids == [str(File.objects.get(name="c.md").id)]


def test_a_file_uploaded_to_app_a_cannot_be_used_by_app_b(api_client, project, owner_key):
    app_a, app_b = files_app(project, "App A"), files_app(project, "App B")
    file_id = upload(api_client, app_a, owner_key).json()["id"]
    for body in ({"input": {"question": "q"}, "file_ids": [file_id]},
                 {"input": {"question": "q"}, "file_ids": [file_id], "background": True}):
        response = api_client.post(f"/apps/{app_b.id}/v1/runs", body, format="json", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
        assert response.status_code == 404
        assert response.json()["error"]["details"] == {"file_ids": [f"unknown file: {file_id}"]}
    assert not Run.objects.filter(app=app_b).exists()


def test_an_unknown_multipart_part_is_refused(api_client, project, owner_key):
    app = files_app(project)
    body = {"input": json.dumps({"question": "q"}), "attachment": SimpleUploadedFile("a.txt", b"a")}
    response = api_client.post(f"/apps/{app.id}/", body, format="multipart", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 400
    assert "attachment" in response.json()["error"]["details"]
