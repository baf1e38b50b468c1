"""The SSRF table (SPEC 12): address forms through the guard itself, then live paths with the guard on (HTTP
node runs through the App-host API, callback validation and delivery, redirects).

Every refusal carries one code, `target_not_allowed`, and one message, whether the name did not resolve or
resolved to a forbidden address. In the live cases a real "thief" server listens on 127.0.0.2 (what an
internal service would be) and must record nothing; a loopback stub on 127.0.0.1 plays the public server
where a case needs one. No test sends a packet beyond loopback: the guard refuses before connecting.
"""

from __future__ import annotations

import socket
import threading
from http.server import ThreadingHTTPServer

import httpx
import pytest

from apps.engine.netguard import (
    TARGET_NOT_ALLOWED,
    TARGET_NOT_ALLOWED_MESSAGE,
    BlockedAddressError,
    check_url_target,
    checked_addresses,
    is_forbidden_ip,
    make_http_client,
)
from apps.runs import http as runs_http
from apps.runs.models import CallbackDelivery, Run
from tests.runs.conftest import (  # noqa: F401 (fixtures used by the callback delivery case)
    _sqlite_template,
    actors,
    make_http_app,
    shared_db,
    thread_executor,
    wait_for,
)
from tests.support.http_stub import HttpStub, StubResponse
from tests.support.network import NoConnect

# --- the guard itself ---------------------------------------------------------------------------------------

FORBIDDEN_IPS = [
    "127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3", "10.0.0.1", "172.16.0.1", "172.31.255.255",
    "192.168.1.1", "169.254.169.254", "100.64.0.1", "100.100.100.200", "192.0.0.9", "192.0.0.170", "192.0.2.1",
    "192.88.99.1", "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9", "224.0.0.251",
    "239.255.255.250", "240.0.0.1", "255.255.255.255",
    "::", "::1", "::8.8.8.8", "::127.0.0.1", "::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:a9fe:a9fe",
    "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "64:ff9b:1::a00:1", "2002:7f00:1::", "2002:808:808::",
    "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:db8::1", "3fff::1", "100::1", "fc00::1",
    "fd00:ec2::254", "fe80::1", "fe80::1%eth0", "fec0::1", "feff::1", "ff02::1", "ff0e::1", "not-an-ip", "",
]
PUBLIC_IPS = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001::1",
              "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("ip", FORBIDDEN_IPS)
def test_is_forbidden_ip_refuses_every_special_range(ip):
    assert is_forbidden_ip(ip) is True


@pytest.mark.parametrize("ip", PUBLIC_IPS)
def test_plain_public_addresses_pass(ip):
    assert is_forbidden_ip(ip) is False


# URL forms resolved by the system resolver (IP literals in every notation the C library accepts; no DNS).
FORBIDDEN_URLS = [
    "https://127.0.0.1/", "https://2130706433/", "https://0x7f000001/", "https://0x7f.1/", "https://0177.0.0.1/",
    "https://127.1/", "https://017700000001/", "https://[::ffff:127.0.0.1]/", "https://[::ffff:7f00:1]/",
    "https://[::127.0.0.1]/", "https://[64:ff9b::a9fe:a9fe]/", "https://[2002:7f00:1::]/",
    "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "https://[fec0::1]/", "https://[fe80::1%25eth0]/",
    "https://169.254.169.254/latest/meta-data/", "https://100.100.100.200/", "https://0.0.0.0/", "https://0/",
    "https://[::]/", "https://[::1]:8443/", "https://224.0.0.1/", "https://255.255.255.255/",
    "https://10.0.0.1:443/", "https://192.168.0.1/", "https://[fd00::1]/", "https://[ff02::1]/",
    "https://localhost/", "https://localhost./",
]


def _assert_refused(call):
    with pytest.raises(BlockedAddressError) as refused:
        call()
    assert refused.value.code == TARGET_NOT_ALLOWED
    assert str(refused.value) == TARGET_NOT_ALLOWED_MESSAGE


# httpx itself refuses these as URLs (its IPv4 parser rejects the octal notation) before any guard runs.
HTTPX_INVALID = {"https://0177.0.0.1/"}


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
def test_url_forms_are_refused_by_check_url_target_and_by_the_client(url):
    _assert_refused(lambda: check_url_target(url, allow_private=False))
    with make_http_client(allow_private=False, timeout=2.0) as client, NoConnect():
        if url in HTTPX_INVALID:
            with pytest.raises(httpx.InvalidURL):
                client.get(url)
        else:
            _assert_refused(lambda: client.get(url.replace("https://", "http://")))


def fake_dns(table):
    """A resolver from a table: a list of addresses, or None for a name that does not resolve."""

    def resolve(host, port):
        answer = table.get(host.rstrip(".").lower(), None)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answer

    return resolve


DNS = {
    "public.example": ["93.184.216.34"],
    "mixed.example": ["93.184.216.34", "10.0.0.5"],
    "mixed6.example": ["2606:4700:4700::1111", "fe80::1"],
    "metadata.example": ["169.254.169.254"],
    "sitelocal.example": ["fec0::1"],
    "teredo.example": ["2001:0:4136:e378:8000:63bf:3fff:fdd2"],
    "nat64.example": ["64:ff9b::a00:1"],
    "empty.example": [],
    "internal.corp": ["10.1.2.3"],
}
NAMES = ["mixed.example", "mixed6.example", "metadata.example", "metadata.example.", "sitelocal.example",
         "teredo.example", "nat64.example", "empty.example", "internal.corp", "INTERNAL.CORP.",
         "does-not-exist.internal", "db.svc.cluster.local"]


@pytest.mark.parametrize("name", NAMES)
def test_names_are_refused_alike_whether_they_resolve_to_a_forbidden_address_or_not_at_all(name):
    _assert_refused(lambda: checked_addresses(name, 443, allow_private=False, resolve=fake_dns(DNS)))


def test_a_public_name_passes_and_the_refusal_reason_is_only_logged(caplog):
    assert checked_addresses("public.example", 443, allow_private=False, resolve=fake_dns(DNS)) == ["93.184.216.34"]
    caplog.set_level("INFO", logger="apps.engine.netguard")
    for name in ("internal.corp", "does-not-exist.internal"):
        with pytest.raises(BlockedAddressError):
            checked_addresses(name, 443, allow_private=False, resolve=fake_dns(DNS))
    reasons = [r.getMessage() for r in caplog.records]
    assert any("internal.corp" in m and "forbidden address" in m for m in reasons)
    assert any("does-not-exist.internal" in m and "did not resolve" in m for m in reasons)


# --- live paths, guard on -----------------------------------------------------------------------------------


class Thief:
    """An HTTP server on 127.0.0.2 (an internal service) recording whatever reaches it."""

    def __enter__(self):
        self.stub = HttpStub(lambda r: StubResponse(200, {"stolen": True}))
        self.stub.server.server_close()
        self.stub.server = ThreadingHTTPServer(("127.0.0.2", 0), self.stub.server.RequestHandlerClass)
        self.stub.server.daemon_threads = True
        self.stub.thread = threading.Thread(target=self.stub.server.serve_forever, daemon=True)
        self.stub.__enter__()
        self.port = self.stub.server.server_address[1]
        return self

    def __exit__(self, *exc):
        self.stub.__exit__(*exc)

    @property
    def requests(self):
        return self.stub.requests


@pytest.fixture
def thief():
    with Thief() as server:
        yield server


@pytest.fixture
def guard_on(settings):
    settings.ALLOW_PRIVATE_NETWORK_TARGETS = False


@pytest.fixture
def internal_dns(monkeypatch, thief):
    """Names an attacker might try: one resolving to the thief, one that resolves nowhere. The guard calls
    socket.getaddrinfo at connect time, so patching it reaches the process-wide clients too."""
    original = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        name = str(host).rstrip(".").lower()
        if name == "thief.internal.example":
            return original("127.0.0.2", port, *args, **kwargs)
        if name == "nowhere.internal.example":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return original(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def node_urls(port):
    return [
        f"http://127.0.0.2:{port}/steal", f"http://2130706434:{port}/", f"http://0x7f000002:{port}/",
        f"http://127.2:{port}/", f"http://127.0.0.2.:{port}/", f"http://[::ffff:127.0.0.2]:{port}/",
        f"http://thief.internal.example:{port}/", f"http://thief.internal.example.:{port}/",
        f"http://nowhere.internal.example:{port}/", "http://[fec0::1]/",
    ]



def post_run(client, app, key):
    return client.post(f"/apps/{app.id}/v1/runs", {"input": {"question": "q"}}, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {key}")


def _assert_node_refused(response):
    assert response.status_code == 200, response.content
    node = response.json()["nodes"]["call"]
    assert node["status"] == "failure"
    assert node["error"] == {"type": TARGET_NOT_ALLOWED, "message": TARGET_NOT_ALLOWED_MESSAGE}


@pytest.mark.django_db
@pytest.mark.parametrize("index", range(len(node_urls(0))))
def test_http_node_runs_cannot_reach_internal_targets(client, project, owner_key, guard_on, thief, internal_dns, index):
    url = node_urls(thief.port)[index]
    app = make_http_app(project, url, name=f"ssrf-{index}")
    _assert_node_refused(post_run(client, app, owner_key))
    assert thief.requests == []


@pytest.fixture
def public_stub_client(monkeypatch):
    """The process-wide run client, rebuilt so that 127.0.0.1 counts as public (the stub plays an Internet
    server); every other address keeps the normal rules."""
    client = make_http_client(allow_private=False, is_forbidden=lambda ip: ip != "127.0.0.1" and is_forbidden_ip(ip))
    monkeypatch.setitem(runs_http._clients, (False, True, 30.0), client)
    yield client
    client.close()


def redirect_targets(port):
    return [
        f"http://127.0.0.2:{port}/steal", f"http://2130706434:{port}/", f"http://[::ffff:127.0.0.2]:{port}/",
        f"http://thief.internal.example:{port}/", "http://nowhere.internal.example/",
        "http://169.254.169.254/latest/meta-data/",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("index", range(len(redirect_targets(0))))
def test_a_public_server_redirecting_to_an_internal_target_is_refused(client, project, owner_key, guard_on, thief,
                                                                      internal_dns, public_stub_client, index):
    target = redirect_targets(thief.port)[index]
    with HttpStub(lambda r: StubResponse(302, {}, {"Location": target})) as public:
        app = make_http_app(project, f"{public.url}/start", name=f"redirect-{index}")
        _assert_node_refused(post_run(client, app, owner_key))
        assert [r.path for r in public.requests] == ["/start"]  # the public hop was made; the next was not
    assert thief.requests == []


def callback_urls(port):
    return [
        f"https://127.0.0.2:{port}/hook", f"https://[::ffff:127.0.0.2]:{port}/hook",
        f"https://thief.internal.example:{port}/hook", "https://nowhere.internal.example/hook",
        "https://[fec0::1]/hook", f"https://thief.internal.example.:{port}/hook",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("index", range(len(callback_urls(0))))
def test_async_runs_refuse_internal_callback_urls(client, project, owner_key, guard_on, thief, internal_dns, index):
    app = make_http_app(project, "http://10.0.0.1/", name=f"cb-{index}")
    url = callback_urls(thief.port)[index]
    response = client.post(f"/apps/{app.id}/", {"input": {"question": "q"}, "execution_mode": "async",
                                                       "callbacks": [{"url": url}]},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {owner_key}")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == TARGET_NOT_ALLOWED
    assert error["details"] == {"callbacks[0].url": [TARGET_NOT_ALLOWED_MESSAGE]}
    assert not Run.objects.exists()
    assert thief.requests == []


def test_a_callback_name_that_rebinds_to_an_internal_address_after_validation_is_not_delivered(
    client, actors, thread_executor, guard_on, thief, monkeypatch  # noqa: F811
):
    """Public at request time, the thief's address at delivery time: the delivery is refused, dead at once."""
    original = socket.getaddrinfo
    answers = {"count": 0}

    def rebinding(host, port, *args, **kwargs):
        if str(host) == "hooks.rebind.example":
            answers["count"] += 1
            address = "93.184.216.34" if answers["count"] == 1 else "127.0.0.2"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return original(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    app = make_http_app(actors["project"], "http://10.0.0.1/", name="rebind")
    response = client.post(f"/apps/{app.id}/", {"input": {"question": "q"}, "execution_mode": "async",
                                                       "callbacks": [{"url": f"https://hooks.rebind.example:{thief.port}/h"}]},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {actors['owner_key']}")
    assert response.status_code == 202, response.content
    delivery = wait_for(lambda: CallbackDelivery.objects.filter(status="dead").first(), timeout=20,
                        message="the refused delivery")
    assert delivery.attempts == 1 and delivery.last_status_code is None
    assert delivery.last_error == f"{TARGET_NOT_ALLOWED}: {TARGET_NOT_ALLOWED_MESSAGE}"
    assert thief.requests == []


def test_the_table_has_the_promised_size():
    """SPEC 12 / issue 9: at least 40 address forms through the guard and 15 through live paths."""
    guard_cases = len(FORBIDDEN_IPS) + len(PUBLIC_IPS) + len(FORBIDDEN_URLS) + len(NAMES)
    live_cases = len(node_urls(0)) + len(redirect_targets(0)) + len(callback_urls(0)) + 1
    print(f"SSRF table: {guard_cases} guard cases, {live_cases} live cases")
    assert guard_cases >= 40 and live_cases >= 15


@pytest.mark.parametrize("token_url", ["https://10.0.0.1/token", "https://[fec0::1]/token",
                                       "https://nowhere.internal.example/token"])
def test_an_oauth_code_exchange_to_an_internal_or_unresolvable_endpoint_reports_the_one_code(
    guard_on, internal_dns, token_url
):
    from types import SimpleNamespace

    from apps.connections import oauth_client

    provider = SimpleNamespace(client_id="cid", client_secret="secret", token_url=token_url, pkce=False)
    result = oauth_client.exchange_code(provider=provider, code="c", code_verifier="v", redirect="https://p.example/cb")
    assert result == oauth_client.ProviderFailure(TARGET_NOT_ALLOWED)
