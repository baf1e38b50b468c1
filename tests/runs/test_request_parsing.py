"""The run-request parser (hand-written for the hot path): types, limits, multipart string forms."""

import pytest
from django.http import QueryDict

from apps.core.errors import BadRequest
from apps.runs.requests import parse_invoke_request, parse_runs_request


def test_it_reads_every_documented_runs_field():
    request = parse_runs_request({"input": {"q": 1}, "user_id": "u", "session_id": "s", "background": True,
                                  "last_node_output": True, "error_on_node_failure": False,
                                  "file_ids": ["00000000-0000-0000-0000-000000000001"]}, idempotency_key="k")
    assert (request.mode, request.user_id, request.session_id, request.idempotency_key) == ("background", "u", "s", "k")
    assert request.options == {"last_node_output": True, "error_on_node_failure": False, "stream": False}
    assert request.file_ids == ["00000000-0000-0000-0000-000000000001"]


@pytest.mark.parametrize("body, field", [
    ({"input": {}, "user_id": 42}, "user_id"),
    ({"input": {}, "user_id": ""}, "user_id"),
    ({"input": {}, "user_id": "x" * 256}, "user_id"),
    ({"input": {}, "session_id": ["s"]}, "session_id"),
    ({"input": {}, "background": "maybe"}, "background"),
    ({"input": {}, "stream": 2}, "stream"),
    ({"input": {}, "file_ids": ["not-a-uuid"]}, "file_ids"),
    ({"input": {}, "file_ids": "00000000-0000-0000-0000-000000000001"}, "file_ids"),
    ({"input": []}, "input"),
    ({}, "input"),
])
def test_it_refuses_wrong_types_naming_the_field(body, field):
    with pytest.raises(BadRequest) as info:
        parse_runs_request(body)
    assert field in info.value.details


def test_multipart_fields_arrive_as_strings():
    data = QueryDict(mutable=True)
    data.update({"input": '{"question": "q"}', "stream": "true", "last_node_output": "0"})
    request = parse_invoke_request(data)
    assert (request.input, request.mode, request.last_node_output) == ({"question": "q"}, "stream", False)


def test_invoke_modes_and_callbacks():
    request = parse_invoke_request({"input": {}, "execution_mode": "async",
                                    "callbacks": [{"url": "https://example.com/h", "auth": {"type": "bearer", "token": "t"}}]})
    assert request.mode == "async" and request.callbacks[0]["auth"] == {"type": "bearer", "token": "t"}
    with pytest.raises(BadRequest):
        parse_invoke_request({"input": {}, "execution_mode": "later"})
    with pytest.raises(BadRequest) as info:
        parse_invoke_request({"input": {}, "execution_mode": "async", "callbacks": [{"url": "https://e.com", "secret": 1}]})
    assert "callbacks" in info.value.details
    with pytest.raises(BadRequest):
        parse_invoke_request({"input": {}, "execution_mode": "async", "callbacks": [{"url": "https://e.com"}] * 6})
