"""Each run endpoint accepts exactly its documented top-level fields; no request can smuggle in a
connection or a user."""

import pytest

pytestmark = pytest.mark.django_db


def post(api_client, app, path, key, body, **extra):
    return api_client.post(f"/apps/{app.id}{path}", body, format="json", HTTP_AUTHORIZATION=f"Bearer {key}", **extra)


@pytest.mark.parametrize("field", ["connections", "connection_id", "credentials", "user_id", "session_id", "background"])
def test_invoke_refuses_fields_it_does_not_document(api_client, simple_app, owner_key, upstream, field):
    response = post(api_client, simple_app, "/", owner_key, {"input": {"question": "q"}, field: {"x": "y"}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert field in error["message"] and "cannot be overridden per request" in error["message"]
    assert error["details"] == {field: ["unknown field"]}
    assert upstream.requests == []


@pytest.mark.parametrize("field", ["connections", "execution_mode", "callbacks", "overrides"])
def test_runs_refuses_fields_it_does_not_document(api_client, simple_app, owner_key, upstream, field):
    response = post(api_client, simple_app, "/v1/runs", owner_key, {"input": {"question": "q"}, field: []})
    assert response.status_code == 400
    assert field in response.json()["error"]["message"]
    assert upstream.requests == []


def test_invoke_accepts_every_documented_sync_field(api_client, simple_app, owner_key):
    body = {"input": {"question": "q"}, "stream": False, "last_node_output": True, "error_on_node_failure": True,
            "execution_mode": "sync"}
    response = post(api_client, simple_app, "/", owner_key, body)
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["status"] == "completed"
    assert data["output"]["body"]["path"] == "/call"  # last_node_output: the http node's output itself


def test_runs_accepts_every_documented_sync_field(api_client, simple_app, owner_key):
    body = {"input": {"question": "q"}, "user_id": "user-1", "session_id": "s-1", "background": False, "stream": False,
            "last_node_output": False, "error_on_node_failure": False, "file_ids": []}
    response = post(api_client, simple_app, "/v1/runs", owner_key, body)
    assert response.status_code == 200, response.content
    data = response.json()
    assert (data["user_id"], data["session_id"]) == ("user-1", "s-1")


def test_input_is_required_and_must_be_an_object(api_client, simple_app, owner_key):
    assert post(api_client, simple_app, "/", owner_key, {}).status_code == 400
    assert post(api_client, simple_app, "/", owner_key, {"input": "text"}).status_code == 400


def test_input_must_match_the_input_node(api_client, simple_app, owner_key, upstream):
    response = post(api_client, simple_app, "/v1/runs", owner_key, {"input": {}})
    assert response.status_code == 400
    assert "question" in response.json()["error"]["details"]["input"]
    assert upstream.requests == []


def test_background_and_stream_together_are_refused(api_client, simple_app, owner_key):
    response = post(api_client, simple_app, "/v1/runs", owner_key, {"input": {"question": "q"}, "background": True, "stream": True})
    assert response.status_code == 400


def test_stream_with_async_is_refused(api_client, simple_app, owner_key):
    response = post(api_client, simple_app, "/", owner_key, {"input": {"question": "q"}, "stream": True, "execution_mode": "async"})
    assert response.status_code == 400


def test_callbacks_need_async(api_client, simple_app, owner_key):
    body = {"input": {"question": "q"}, "callbacks": [{"url": "https://example.com/hook"}]}
    assert post(api_client, simple_app, "/", owner_key, body).status_code == 400


def test_other_content_types_get_415(api_client, simple_app, owner_key):
    response = api_client.post(f"/apps/{simple_app.id}/", "input=1", content_type="text/plain",
                               HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_wrong_method_is_refused_with_the_envelope(api_client, simple_app, owner_key):
    response = api_client.delete(f"/apps/{simple_app.id}/v1/runs", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
