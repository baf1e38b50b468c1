"""The SSRF guard. Refused addresses are refused before any packet is sent: no test here ever sends traffic to
a non-loopback address (the guard refuses first; the assertion is that it did)."""

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from apps.engine import BlockedAddressError, check_url_target, is_forbidden_ip, make_http_client
from apps.engine.netguard import resolve_host
from tests.support.network import NoConnect

FORBIDDEN_URLS = [
    "http://127.0.0.1/",
    "http://127.0.0.1:8000/admin",
    "http://[::1]/",
    "http://0.0.0.0/",
    "http://2130706433/",  # 127.0.0.1 as one integer
    "http://0x7f.1/",  # 127.0.0.1 in hex shorthand
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:a9fe:a9fe]/",  # 169.254.169.254, IPv4-mapped
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://localhost/",
    "http://localhost./",
]


@pytest.fixture(scope="module")
def guarded_client():
    with make_http_client(allow_private=False, timeout=2.0) as client:
        yield client


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
def test_it_refuses_private_and_special_targets_before_connecting(guarded_client, url):
    with NoConnect(), pytest.raises(BlockedAddressError):
        guarded_client.get(url)


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
def test_check_url_target_refuses_the_same_targets(url):
    with pytest.raises(BlockedAddressError):
        check_url_target(url.replace("http://", "https://"), allow_private=False)
    with pytest.raises(BlockedAddressError):
        check_url_target(url, allow_private=False, require_https=False)


def test_check_url_target_requires_https_unless_private_targets_are_allowed(echo_server):
    with pytest.raises(ValueError, match="https"):
        check_url_target("http://example.com/hook", allow_private=False)
    check_url_target(echo_server.base_url + "/hook", allow_private=True)


def test_blocked_address_error_is_an_httpx_transport_error(guarded_client):
    with pytest.raises(httpx.TransportError):
        guarded_client.get("http://127.0.0.1/")


@pytest.mark.parametrize(("ip", "forbidden"), [
    ("8.8.8.8", False),
    ("1.1.1.1", False),
    ("2606:4700:4700::1111", False),
    ("127.0.0.1", True),
    ("127.9.9.9", True),
    ("::1", True),
    ("::", True),
    ("0.0.0.0", True),
    ("10.1.2.3", True),
    ("172.31.255.255", True),
    ("192.168.0.1", True),
    ("169.254.169.254", True),
    ("100.64.0.1", True),
    ("100.127.255.255", True),
    ("192.0.0.1", True),
    ("198.18.0.1", True),
    ("240.0.0.1", True),
    ("255.255.255.255", True),
    ("224.0.0.1", True),
    ("ff02::1", True),
    ("fc00::1", True),
    ("fe80::1%eth0", True),
    ("::ffff:127.0.0.1", True),
    ("::ffff:10.0.0.1", True),
    ("::ffff:8.8.8.8", False),
    ("2002:7f00:1::", True),  # 6to4 wrapping 127.0.0.1
    ("64:ff9b::a9fe:a9fe", True),  # NAT64 wrapping 169.254.169.254
    ("::127.0.0.1", True),  # IPv4-compatible
    ("not-an-ip", True),
])
def test_is_forbidden_ip(ip, forbidden):
    assert is_forbidden_ip(ip) is forbidden


def test_a_public_looking_name_resolving_to_loopback_is_refused():
    def resolve(host, port):
        return ["93.184.216.34", "127.0.0.1"] if host == "rebind.example" else resolve_host(host, port)

    with make_http_client(allow_private=False, resolve=resolve) as client, NoConnect():
        with pytest.raises(BlockedAddressError, match="target is not allowed") as refused:
            client.get("http://rebind.example/")
    assert refused.value.code == "target_not_allowed"


def test_it_connects_to_the_checked_address_not_the_name_again(echo_server):
    """The name is resolved once; the socket goes to that address (no DNS-rebinding window)."""
    calls = []
    port = echo_server.server_address[1]

    def resolve(host, port):
        calls.append(host)
        return ["127.0.0.1"]

    with make_http_client(allow_private=True, resolve=resolve) as client:
        response = client.get(f"http://api.example.invalid:{port}/hello")
    assert response.status_code == 200
    assert response.json()["headers"]["host"] == f"api.example.invalid:{port}"  # Host keeps the name
    assert calls == ["api.example.invalid"]


def test_every_redirect_hop_is_checked(echo_server):
    """First hop: a test server whose loopback address we declare allowed. The redirect goes to another
    loopback address that the normal rules forbid: refused before connecting."""
    allowed_port_server = echo_server.base_url  # http://127.0.0.1:<port>

    def is_forbidden(ip):
        return False if ip == "127.0.0.1" else is_forbidden_ip(ip)

    with make_http_client(allow_private=False, is_forbidden=is_forbidden) as client:
        ok = client.get(f"{allowed_port_server}/plain")
        assert ok.status_code == 200
        for target in ("http://127.0.0.2:9/", "http://169.254.169.254/latest/meta-data/", "http://[::1]:9/"):
            with pytest.raises(BlockedAddressError):
                client.get(f"{allowed_port_server}/redirect", params={"to": target})


def test_allow_private_lifts_the_check_for_loopback(echo_server):
    with make_http_client(allow_private=True) as client:
        assert client.get(f"{echo_server.base_url}/x").status_code == 200
    check_url_target(echo_server.base_url, allow_private=True)


def test_keep_alive_connections_are_reused(echo_server):
    """The guard runs per connection, not per request: a second request reuses the pooled connection."""
    resolved = []

    def resolve(host, port):
        resolved.append(host)
        return ["127.0.0.1"]

    with make_http_client(allow_private=True, resolve=resolve) as client:
        for _ in range(5):
            assert client.get(f"{echo_server.base_url}/again").status_code == 200
    assert resolved == ["127.0.0.1"]


def test_check_url_target_refuses_malformed_urls():
    for url in ("ftp://example.com/", "not a url", "http:///path"):
        with pytest.raises(ValueError):
            check_url_target(url, allow_private=False)


def test_the_engine_package_imports_no_django():
    code = "import sys, apps.engine, apps.engine.executor; print(any(m.startswith('django') for m in sys.modules))"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "False"
