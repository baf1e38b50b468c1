"""The parameterized merge of http nodes: connection < node config < run-input layer."""

import pytest

from apps.engine import NodeError, prepare_http_request

from .conftest import conn

HTTP_CONN = conn(
    "c1", "http",
    url="https://api.example.com/v1/items",
    method="GET",
    headers={"Authorization": "Basic c2VjcmV0", "Accept": "application/json", "X-Layer": "connection"},
    params={"api_token": "tok-secret", "page": "1", "from": "connection"},
    data={"password": "pw-secret", "a": "connection", "b": "connection"},
    parameters=["account_id"],
)


def prep(connection=HTTP_CONN, config=None, inputs=None, raw_url=None):
    return prepare_http_request(connection=connection, config=config or {}, inputs=inputs, raw_url=raw_url)


def error_type(**kwargs):
    with pytest.raises(NodeError) as info:
        prep(**kwargs)
    return info.value.type


def test_it_merges_headers_params_and_data_key_by_key():
    # Every key the connection sets is secret and keeps its value (SPEC §12); the node config and run
    # input merge key by key on the others.
    req = prep(
        config={"method": "POST", "headers": {"X-Layer": "config", "X-Config": "1", "X-Both": "config"},
                "params": {"page": "2", "c": "config"}, "data": {"b": "config", "c": "config"}},
        inputs={"headers": {"x-layer": "inputs", "x-both": "inputs"}, "params": {"c": "inputs"},
                "data": {"c": "inputs", "d": "inputs"}},
    )
    assert {k.lower(): v for k, v in req.headers.items()} == {
        "authorization": "Basic c2VjcmV0", "accept": "application/json", "x-layer": "connection", "x-config": "1",
        "x-both": "inputs",
    }
    assert req.params == {"api_token": "tok-secret", "page": "1", "from": "connection", "c": "inputs"}
    assert req.json == {"password": "pw-secret", "a": "connection", "b": "connection", "c": "inputs", "d": "inputs"}


def test_a_layer_can_drop_a_key_with_null():
    req = prep(config={"params": {"extra": "x"}, "headers": {"X-Extra": "x"}},
               inputs={"params": {"extra": None}, "headers": {"x-extra": None}})
    assert "extra" not in req.params
    assert "X-Extra" not in req.headers


def test_every_key_an_http_connection_sets_is_protected_whatever_its_name():
    # `X-Honeycomb-Team`, `appid`, `team` do not look like credentials, yet they are the connection's secrets.
    honeycomb = conn("hc", "http", url="https://api.honeycomb.example/1/events",
                     headers={"X-Honeycomb-Team": "hc-team-key-0123"}, params={"appid": "owm-app-id-4567"},
                     data={"team": "team-secret-89ab"})
    req = prep(
        connection=honeycomb,
        config={"method": "POST", "headers": {"x-honeycomb-team": "from-config"}, "params": {"appid": "cfg"}},
        inputs={"headers": {"X-HONEYCOMB-TEAM": "attacker"}, "params": {"appid": "attacker"},
                "data": {"team": "attacker"}},
    )
    assert [v for k, v in req.headers.items() if k.lower() == "x-honeycomb-team"] == ["hc-team-key-0123"]
    assert req.params == {"appid": "owm-app-id-4567"}
    assert req.json == {"team": "team-secret-89ab"}
    dropped = prep(connection=honeycomb, inputs={"headers": {"x-honeycomb-team": None}, "params": {"appid": None},
                                                  "data": {"team": None}}, config={"method": "POST"})
    assert dropped.headers["X-Honeycomb-Team"] == "hc-team-key-0123"
    assert dropped.params == {"appid": "owm-app-id-4567"} and dropped.json == {"team": "team-secret-89ab"}


def test_url_and_method_most_specific_non_empty_wins():
    assert prep().method == "GET"
    assert prep().url == "https://api.example.com/v1/items"
    req = prep(config={"method": "put", "url": "https://api.example.com/v2/things"}, inputs={"method": "", "url": ""})
    assert (req.method, req.url) == ("PUT", "https://api.example.com/v2/things")
    req = prep(config={"method": "PUT"}, inputs={"method": "PATCH", "url": "https://api.example.com/v3"})
    assert (req.method, req.url) == ("PATCH", "https://api.example.com/v3")


def test_relative_urls_resolve_against_the_less_specific_layer():
    assert prep(config={"url": "/invoices"}).url == "https://api.example.com/invoices"
    assert prep(config={"url": "sub"}).url == "https://api.example.com/v1/sub"
    assert prep(inputs={"url": "?page=3"}).url == "https://api.example.com/v1/items?page=3"


def test_it_fails_with_no_url_anywhere():
    with pytest.raises(NodeError, match="No url provided") as info:
        prep(connection=None, config={"method": "GET"})
    assert info.value.as_dict() == {"type": "no_url", "message": "No url provided"}
    assert error_type(connection=conn("c", "http", method="GET")) == "no_url"


def test_run_input_cannot_move_credentials_to_another_origin():
    assert error_type(inputs={"url": "https://evil.example.net/collect"}) == "origin_not_allowed"
    assert error_type(inputs={"url": "http://api.example.com/v1/items"}) == "origin_not_allowed"  # scheme
    assert error_type(inputs={"url": "https://api.example.com:8443/v1"}) == "origin_not_allowed"  # port
    assert error_type(inputs={"url": "//evil.example.net/x"}) == "origin_not_allowed"  # scheme-relative
    assert error_type(inputs={"url": "https://api.example.com@evil.example.net/"}) == "origin_not_allowed"
    # Same origin, other path: allowed.
    assert prep(inputs={"url": "https://API.example.com:443/other"}).url == "https://API.example.com:443/other"


def test_node_config_cannot_move_a_connection_url_either():
    assert error_type(config={"url": "https://other.example.org/"}) == "origin_not_allowed"


@pytest.mark.parametrize("connection", [
    conn("u1", "http", headers={"X-Api-Key": "k-secret"}),
    conn("u2", "http", params={"appid": "a-secret"}),
    conn("u3", "http", data={"team": "t-secret"}),
    conn("u4", "http_api_key", api_key="k-123456"),
    conn("u5", "oauth2", provider_id="p", access_token="at-123456"),
])
def test_a_credential_bearing_connection_without_url_fails_instead_of_trusting_the_node(connection):
    # Rows saved before `url` became required: the node config may not choose where the secrets go,
    # not even a literal URL written by the builder.
    assert error_type(connection=connection, config={"url": "https://builder.example.com/x"}) == "origin_not_allowed"
    assert error_type(connection=connection, config={"url": "https://b.example.com/x"},
                      inputs={"url": "/y"}) == "origin_not_allowed"


def test_with_a_connection_but_no_trusted_url_run_input_cannot_choose_one():
    # An http connection that carries nothing secret (method and parameters only) fixes no origin: the
    # builder's node config URL does, never run input.
    bare = conn("c2", "http", method="GET", parameters=["account_id"])
    assert error_type(connection=bare, inputs={"url": "https://evil.example.net/"}) == "origin_not_allowed"
    # The node config (written by the builder) may set it...
    req = prep(connection=bare, config={"url": "https://builder.example.com/x"}, inputs={"url": "/y"})
    assert req.url == "https://builder.example.com/y"
    # ...unless the origin part of that config URL is itself a template (a caller could choose it).
    assert error_type(
        connection=bare, config={"url": "https://evil.example.net/x"}, raw_url="{{ input.url }}",
    ) == "origin_not_allowed"
    assert error_type(
        connection=bare, config={"url": "https://evil.example.net/x"}, raw_url="https://{{ input.host }}/x",
    ) == "origin_not_allowed"
    req = prep(connection=bare, config={"url": "https://b.example.com/q/1"}, raw_url="https://b.example.com/q/{{ x }}")
    assert req.url == "https://b.example.com/q/1"


def test_without_a_connection_the_input_url_is_allowed():
    req = prep(connection=None, inputs={"url": "https://anywhere.example.net/x"})
    assert req.url == "https://anywhere.example.net/x"
    assert req.pinned_origin is None


def test_run_input_cannot_override_secret_fields_of_an_http_connection():
    req = prep(
        config={"method": "POST", "headers": {"authorization": "Bearer from-config"}},
        inputs={"headers": {"AUTHORIZATION": "Bearer attacker"}, "params": {"api_token": "attacker"},
                "data": {"password": "attacker"}},
    )
    auth = [v for k, v in req.headers.items() if k.lower() == "authorization"]
    assert auth == ["Basic c2VjcmV0"]
    assert req.params["api_token"] == "tok-secret"
    assert req.json["password"] == "pw-secret"


def test_a_layer_cannot_drop_a_secret_key_of_the_connection():
    req = prep(inputs={"headers": {"Authorization": None}, "params": {"api_token": None}})
    assert req.headers["Authorization"] == "Basic c2VjcmV0"
    assert req.params["api_token"] == "tok-secret"


def test_the_api_key_header_is_applied_last():
    api = conn("c3", "http_api_key", url="https://api.example.com", api_key="key-123456", header="X-Api-Key",
               prefix="")
    req = prep(connection=api, config={"headers": {"x-api-key": "from-config"}},
               inputs={"headers": {"X-API-KEY": "attacker", "X-Other": "ok"}})
    assert {k.lower(): v for k, v in req.headers.items()} == {"x-api-key": "key-123456", "x-other": "ok"}
    default = conn("c4", "http_api_key", url="https://api.example.com", api_key="key-123456")
    assert prep(connection=default, inputs={"headers": {"Authorization": "x"}}).headers == {
        "Authorization": "Bearer key-123456"}


def test_the_oauth2_token_is_applied_last():
    oauth = conn("c5", "oauth2", provider_id="p", url="https://api.example.com", access_token="at-123456")
    req = prep(connection=oauth, inputs={"headers": {"authorization": "Bearer attacker"}})
    assert req.headers == {"Authorization": "Bearer at-123456"}
    no_token = conn("c6", "oauth2", provider_id="p", url="https://api.example.com")
    assert error_type(connection=no_token) == "invalid_connection"


def test_declared_parameters_fill_url_placeholders_quoted():
    templated = conn("c7", "http", url="https://api.example.com/accounts/{account_id}/items", parameters=["account_id"])
    req = prep(connection=templated, config={"parameters": {"account_id": "1"}},
               inputs={"parameters": {"account_id": 42}})
    assert req.url == "https://api.example.com/accounts/42/items"
    req = prep(connection=templated, inputs={"parameters": {"account_id": "../../admin?x=1#"}})
    assert req.url == "https://api.example.com/accounts/..%2F..%2Fadmin%3Fx%3D1%23/items"
    assert error_type(connection=templated) == "missing_parameter"


def test_undeclared_parameters_are_not_filled_for_an_http_connection():
    templated = conn("c8", "http", url="https://api.example.com/{account_id}/{other}", parameters=["account_id"])
    req = prep(connection=templated, inputs={"parameters": {"account_id": "a", "other": "b"}})
    assert req.url == "https://api.example.com/a/{other}"


def test_data_is_a_json_body_only_for_post_put_patch():
    assert prep(config={"method": "GET"}).json is None
    assert prep(config={"method": "DELETE"}).json is None
    assert prep(config={"method": "PATCH"}).json is not None
    assert prep(connection=None, config={"url": "https://x.example.com", "method": "POST"}).json is None


def test_it_rejects_bad_shapes():
    assert error_type(config={"method": "TRACE"}) == "invalid_config"
    assert error_type(config={"headers": ["x"]}) == "invalid_config"
    assert error_type(connection=None, config={"url": "/relative"}) == "invalid_url"
    assert error_type(connection=None, config={"url": "file:///etc/passwd"}) == "invalid_url"
    assert error_type(connection=conn("p", "postgresql", host="h")) == "invalid_connection"


# --- run input never chooses where credentials go (security review L1) -----------------------------------


@pytest.mark.parametrize("connection, config, inputs", [
    # A declared parameter in the connection's host, filled by the caller.
    (conn("h1", "http", url="https://{host}/v1", parameters=["host"], headers={"Authorization": "Bearer t-1234"}),
     {}, {"parameters": {"host": "evil.example.net"}}),
    # The port of an API-key connection (any parameter name is filled for it).
    (conn("h2", "http_api_key", url="https://api.example.com:{port}/", api_key="k-123456"),
     {}, {"parameters": {"port": "8443"}}),
    # The node config's URL is the trusted one (the connection has none), its host a placeholder.
    (conn("h3", "oauth2", provider_id="p", access_token="at-123456"),
     {"url": "https://{host}/me"}, {"parameters": {"host": "evil.example.net"}}),
    # The userinfo counts as origin too.
    (conn("h5", "http_api_key", url="https://{user}@api.example.com/", api_key="k-123456"),
     {}, {"parameters": {"user": "x"}}),
    # A node config URL overriding the connection's, with a placeholder host.
    (conn("h6", "http_api_key", url="https://api.example.com/", api_key="k-123456"),
     {"url": "https://{host}/x"}, {"parameters": {"host": "api.example.com"}}),
])
def test_a_placeholder_in_the_origin_of_a_credentialed_url_is_refused(connection, config, inputs):
    assert error_type(connection=connection, config=config, inputs=inputs) == "origin_not_allowed"


def test_even_a_node_config_value_may_not_fill_a_credentialed_origin():
    regional = conn("h7", "http_api_key", url="https://{region}.api.example.com/", api_key="k-123456")
    assert error_type(connection=regional, config={"parameters": {"region": "eu"}}) == "origin_not_allowed"


def test_a_placeholder_in_the_scheme_makes_no_absolute_url():
    # `{scheme}://...` is not an absolute URL at all: refused as the first layer, a mere path after one.
    templated = conn("h4", "http_api_key", url="{scheme}://api.example.com/", api_key="k-123456")
    assert error_type(connection=templated, inputs={"parameters": {"scheme": "http"}}) == "invalid_url"
    api = conn("h4", "http_api_key", url="https://api.example.com/", api_key="k-123456")
    req = prep(connection=api, config={"url": "http{s}://evil.example.net/"}, inputs={"parameters": {"s": "s"}})
    assert req.pinned_origin == ("https", "api.example.com", 443) and req.url.startswith("https://api.example.com/")


def test_placeholders_in_the_path_still_work_and_the_origin_is_pinned_from_trusted_layers():
    api = conn("h8", "http_api_key", url="https://api.example.com/accounts/{id}", api_key="k-123456")
    req = prep(connection=api, inputs={"parameters": {"id": "evil.example.net:1"}})
    assert req.url == "https://api.example.com/accounts/evil.example.net%3A1"
    assert req.pinned_origin == ("https", "api.example.com", 443)


def test_without_a_connection_the_caller_may_choose_the_host():
    req = prep(connection=None, config={"url": "https://{host}/x"}, inputs={"parameters": {"host": "example.org"}})
    assert req.url == "https://example.org/x" and req.pinned_origin is None
