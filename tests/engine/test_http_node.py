"""http nodes end to end, against real servers on loopback."""

import base64
from urllib.parse import quote

import pytest

from apps.engine import make_http_client
from apps.engine.connection_types import MASK

from .conftest import FakeResolver, conn, workflow

API_KEY = "sk-live-0123456789abcdef"


def api_key_conn(server, **extra):
    return conn("c-api", "http_api_key", url=server.base_url, api_key=API_KEY, **extra)


def test_it_sends_the_merged_request_and_returns_status_headers_and_parsed_body(run, echo_server):
    # Every value the connection sets is secret (SPEC §12): it wins over the node and run input, and it
    # is masked wherever it shows, here in the echoed request ("1" is too short to mask).
    http = conn("c-http", "http", url=echo_server.base_url + "/base", method="GET",
                headers={"X-Keep": "connection"}, params={"a": "1"}, data={"x": "connection"})
    definition = workflow(
        {"id": "call", "type": "http", "connection": {"id": "c-http"},
         "config": {"method": "POST", "url": "/things?fixed=1", "headers": {"X-From": "config", "X-Keep": "config"},
                    "params": {"b": "{{ input.q }}"}, "data": {"y": "{{ input.n }}"},
                    "inputs": {"headers": {"X-From": "inputs"}, "params": {"c": "{{ input.q | upper }}"},
                               "data": {"z": "{{ input.n * 2 }}"}}}},
        fields={"q": {"type": "string", "required": True}, "n": {"type": "integer"}},
        output={"echo": "{{ nodes.call.output.body }}", "status": "{{ nodes.call.output.status_code }}"},
    )
    result, _ = run(definition, {"q": "hi", "n": 2}, resolver=FakeResolver({"c-http": http}))
    assert result.status == "completed", result.nodes
    echo = result.output["echo"]
    assert result.output["status"] == 200
    assert echo["method"] == "POST"
    assert echo["path"] == "/things"
    assert echo["query"] == {"fixed": "1", "a": "1", "b": "hi", "c": "HI"}
    assert echo["headers"]["x-from"] == "inputs"
    assert echo["headers"]["x-keep"] == "********"  # the connection's value, masked
    assert echo["body"] == {"x": "********", "y": 2, "z": 4}
    node = result.nodes["call"]
    assert node.output["headers"]["content-type"] == "application/json"
    assert node.connection == {"connection_id": "c-http", "owner": "project", "user_id": None, "requirement_id": None}


def test_input_cannot_replace_the_connection_authorization(run, echo_server):
    definition = workflow(
        {"id": "call", "type": "http", "connection": {"id": "c-api"},
         "config": {"url": "/me", "inputs": {"headers": {"Authorization": "{{ input.token }}"}}}},
        fields={"token": {"type": "string"}},
        output={"seen": "{{ nodes.call.output.body.headers.authorization }}"},
    )
    resolver = FakeResolver({"c-api": api_key_conn(echo_server)})
    result, _ = run(definition, {"token": "Bearer attacker"}, resolver=resolver)
    # The upstream saw the connection's key (masked on the way back), never the caller's value.
    assert result.output["seen"] == MASK


def test_it_masks_an_upstream_echo_of_the_credential_in_outputs_and_events(run, echo_server):
    encoded = base64.b64encode(API_KEY.encode()).decode()
    definition = workflow(
        {"id": "call", "type": "http", "connection": {"id": "c-api"},
         "config": {"url": "/echo", "params": {"b64": encoded, "q": quote(API_KEY, safe="")},
                    "headers": {"X-Copy": f"raw {API_KEY}"}}},
        output={"all": "{{ nodes.call.output }}"},
    )
    result, events = run(definition, resolver=FakeResolver({"c-api": api_key_conn(echo_server)}))
    assert result.status == "completed"
    text = repr(result.to_dict()) + repr(events)
    for form in (API_KEY, encoded, encoded.rstrip("="), quote(API_KEY, safe="")):
        assert form not in text
    echo = result.nodes["call"].output["body"]
    assert echo["headers"]["authorization"] == MASK
    assert echo["headers"]["x-copy"] == f"raw {MASK}"
    assert echo["query"] == {"b64": MASK, "q": MASK}
    completed = [data for type, data in events if type == "node.completed" and data["node_id"] == "call"]
    assert completed[0]["output"]["body"]["headers"]["authorization"] == MASK


def test_every_value_of_an_http_connection_is_masked_in_outputs_and_events_whatever_its_name(run, echo_server):
    # `X-Honeycomb-Team` and `appid` do not look like credentials, but they are (SPEC §12). "on" is too
    # short to mask without destroying output (MIN_SECRET_LENGTH): write-only and protected, not masked.
    team, appid = "hc-team-key-0a1b2c3d", "owm-appid-9f8e7d6c"
    http = conn("c-hc", "http", url=echo_server.base_url, headers={"X-Honeycomb-Team": team},
                params={"appid": appid, "debug": "on"})
    definition = workflow(
        {"id": "call", "type": "http", "connection": {"id": "c-hc"}, "config": {"url": "/echo"}},
        output={"all": "{{ nodes.call.output }}", "upper": "{{ nodes.call.output.body.headers | tojson }}"},
    )
    result, events = run(definition, resolver=FakeResolver({"c-hc": http}))
    assert result.status == "completed", result.nodes
    text = repr(result.to_dict()) + repr(events)
    for form in (team, appid, base64.b64encode(team.encode()).decode()):
        assert form not in text
    echo = result.nodes["call"].output["body"]
    assert echo["headers"]["x-honeycomb-team"] == MASK
    assert echo["query"] == {"appid": MASK, "debug": "on"}


def test_a_non_2xx_answer_is_an_http_error_unless_raise_for_status_is_false(run, echo_server):
    definition = workflow(
        {"id": "strict", "type": "http", "config": {"url": echo_server.base_url + "/status/404"}},
        {"id": "lenient", "type": "http",
         "config": {"url": echo_server.base_url + "/status/500", "raise_for_status": False}},
        output={"code": "{{ nodes.lenient.output.status_code }}"},
        output_deps=["lenient"],
    )
    result, _ = run(definition)
    strict = result.nodes["strict"]
    assert strict.status == "failure"
    assert strict.output is None
    assert strict.error["type"] == "http_error"
    assert strict.error["status_code"] == 404
    assert result.nodes["lenient"].status == "success"
    assert result.output == {"code": 500}


def test_a_text_body_stays_text(run, echo_server):
    result, _ = run(workflow({"id": "t", "type": "http", "config": {"url": echo_server.base_url + "/text"}},
                             output={"b": "{{ nodes.t.output.body }}"}))
    assert result.output == {"b": "plain words"}


def test_no_url_is_a_node_error(run):
    result, _ = run(workflow({"id": "call", "type": "http", "config": {"method": "GET"}}))
    assert result.nodes["call"].error == {"type": "no_url", "message": "No url provided"}
    assert result.nodes["output"].status == "skipped"


def test_input_url_to_another_origin_is_refused_with_a_connection(run, echo_server, unauthorized_server):
    definition = workflow(
        {"id": "call", "type": "http", "connection": {"id": "c-api"},
         "config": {"url": "/ok", "inputs": {"url": "{{ input.target }}"}}},
        fields={"target": {"type": "string"}},
    )
    result, _ = run(definition, {"target": unauthorized_server.base_url + "/steal"},
                    resolver=FakeResolver({"c-api": api_key_conn(echo_server)}))
    assert result.nodes["call"].error["type"] == "origin_not_allowed"
    assert result.nodes["call"].connection["connection_id"] == "c-api"


def test_a_redirect_to_another_origin_is_not_followed_with_credentials(run, echo_server, unauthorized_server):
    target = unauthorized_server.base_url + "/x"
    definition = workflow({"id": "call", "type": "http", "connection": {"id": "c-api"},
                           "config": {"url": "/redirect", "params": {"to": target}}})
    result, _ = run(definition, resolver=FakeResolver({"c-api": api_key_conn(echo_server, header="X-Api-Key")}))
    assert result.nodes["call"].error["type"] == "redirect_not_allowed"


def test_a_same_origin_redirect_is_followed_with_credentials(run, echo_server):
    definition = workflow({"id": "call", "type": "http", "connection": {"id": "c-api"},
                           "config": {"url": "/redirect", "params": {"to": echo_server.base_url + "/landed"}}},
                          output={"path": "{{ nodes.call.output.body.path }}",
                                  "auth": "{{ nodes.call.output.body.headers.authorization }}"})
    result, _ = run(definition, resolver=FakeResolver({"c-api": api_key_conn(echo_server)}))
    assert result.output == {"path": "/landed", "auth": MASK}


def test_on_401_the_resolver_is_told_and_a_returned_connection_is_retried_once(run, unauthorized_server):
    stale = conn("c-oauth", "oauth2", owner="end_user", provider_id="p", url=unauthorized_server.base_url,
                 access_token="stale-token", refresh_token="refresh-123456")
    fresh = conn("c-oauth", "oauth2", owner="end_user", provider_id="p", url=unauthorized_server.base_url,
                 access_token="fresh-token", refresh_token="refresh-123456")
    resolver = FakeResolver(requirements={"req-1": stale}, refreshed=fresh)
    definition = workflow({"id": "call", "type": "http", "connection": {"requirement": "req-1"},
                           "config": {"url": "/data"}}, output={"body": "{{ nodes.call.output.body }}"})
    result, events = run(definition, resolver=resolver)
    assert result.status == "completed", result.nodes["call"].error
    assert [c.config["access_token"] for c in resolver.unauthorized_calls] == ["stale-token"]
    assert result.output == {"body": {"ok": True, "auth": f"Bearer {MASK}"}}  # the new token is masked too
    assert "fresh-token" not in repr(events)


def test_on_401_without_a_replacement_the_node_fails(run, unauthorized_server):
    user_conn = conn("c-user", "http_api_key", owner="end_user", url=unauthorized_server.base_url,
                     api_key="revoked-key-123")
    resolver = FakeResolver(requirements={"req-1": user_conn})
    definition = workflow({"id": "call", "type": "http", "connection": {"requirement": "req-1"},
                           "config": {"url": "/data"}})
    result, _ = run(definition, resolver=resolver)
    assert [c.connection_id for c in resolver.unauthorized_calls] == ["c-user"]
    assert result.nodes["call"].error["type"] == "http_error"
    assert result.nodes["call"].error["status_code"] == 401


def test_a_refreshed_token_that_is_refused_too_is_reported_again(run, unauthorized_server):
    stale = conn("c-o", "oauth2", owner="end_user", provider_id="p", url=unauthorized_server.base_url,
                 access_token="stale-token")
    still_bad = conn("c-o", "oauth2", owner="end_user", provider_id="p", url=unauthorized_server.base_url,
                     access_token="also-bad-token")
    resolver = FakeResolver(requirements={"r": stale}, refreshed=still_bad)
    result, _ = run(workflow({"id": "call", "type": "http", "connection": {"requirement": "r"},
                              "config": {"url": "/data"}}), resolver=resolver)
    assert [c.config["access_token"] for c in resolver.unauthorized_calls] == ["stale-token", "also-bad-token"]
    assert result.nodes["call"].error["status_code"] == 401


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/", "http://169.254.169.254/latest/meta-data/",
                                 "http://10.0.0.1/", "http://localhost:9/"])
def test_the_engine_refuses_private_targets_with_the_guard_on(run, url):
    with make_http_client(allow_private=False, timeout=2.0) as guarded:
        result, _ = run(workflow({"id": "call", "type": "http", "config": {"url": url}}), client=guarded)
    assert result.nodes["call"].error["type"] == "target_not_allowed"
