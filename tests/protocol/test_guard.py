"""The refusal decisions for requests a web page could have sent, with plain values."""

from __future__ import annotations

import pytest

from lmsd.protocol.anthropic.errors import AnthropicError, render
from lmsd.protocol.failures import Forbidden, UnsupportedMedia
from lmsd.protocol.guard import (
    Policy,
    check,
    host_allowed,
    is_json_type,
    normalize_origin,
    origin_allowed,
    parse_hosts,
    parse_origins,
    split_host,
)


class Headers(dict):
    """Case-insensitive lookups, as HTTP header maps do."""

    def __init__(self, **items: str) -> None:
        super().__init__({k.replace("_", "-").lower(): v for k, v in items.items()})

    def get(self, key, default=None):  # type: ignore[override]
        return super().get(key.lower(), default)


LOOPBACK = Policy("127.0.0.1")
JSON = "application/json"


def refusal(policy: Policy, headers: Headers, **kw) -> AnthropicError | None:
    """``check``'s refusal as the Anthropic front renders it (status, type, message)."""
    failure = check(policy, headers, **kw)
    if failure is None:
        return None
    assert isinstance(failure, Forbidden | UnsupportedMedia)
    error = render(failure)
    assert (error.status == 403) == isinstance(failure, Forbidden)
    return error


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.1:19234", ("127.0.0.1", 19234)),
    ("LocalHost", ("localhost", None)),
    ("localhost.:80", ("localhost", 80)),
    ("[::1]:19235", ("::1", 19235)),
    ("[::1]", ("::1", None)),
    ("Evil.Example:19235", ("evil.example", 19235)),
    ("::1", None),                # IPv6 without brackets
    ("evil.example:port", None),
    ("a b", None),
    ("user@127.0.0.1", None),
    ("[evil.example]", None),
    ("", None),
])
def test_split_host(value, expected):
    assert split_host(value) == expected


@pytest.mark.parametrize("host", [
    "127.0.0.1:19235", "127.0.0.1", "127.8.9.10:1", "localhost:19234", "LOCALHOST",
    "[::1]:19235", "[::1]", None,  # no Host at all: HTTP/1.0, not a browser
])
def test_loopback_names_pass_with_any_port(host):
    assert host_allowed(host, LOOPBACK)


@pytest.mark.parametrize("host", [
    "evil.example:19235", "evil.example", "127.0.0.1.nip.io", "localhost.evil.example",
    "192.168.1.5:19234", "::1", "", "a b", "127.0.0.1 evil",
])
def test_other_hosts_are_refused_on_a_loopback_listener(host):
    assert not host_allowed(host, LOOPBACK)


def test_the_configured_host_and_machine_names_pass():
    policy = Policy("192.168.1.5", machine_names=("gpu-box", "gpu-box.lan"))
    for host in ("192.168.1.5:19234", "gpu-box:19234", "GPU-BOX.lan", "localhost"):
        assert host_allowed(host, policy), host
    assert not host_allowed("192.168.1.6:19234", policy)
    assert host_allowed("[fd00::5]:1", Policy("[fd00::5]"))


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::", "[::]", ""])
def test_a_wildcard_listener_accepts_any_ip_address_but_no_foreign_name(wildcard):
    policy = Policy(wildcard)
    assert host_allowed("192.168.1.5:19234", policy)
    assert host_allowed("[fd00::5]:19234", policy)
    assert not host_allowed("evil.example:19234", policy)


def test_allowed_hosts_exact_suffix_and_any():
    policy = Policy("127.0.0.1", allowed_hosts=("lmsd.example", "*.lan"))
    assert host_allowed("LMSD.example:443", policy)
    assert host_allowed("box.lan:19234", policy)
    assert not host_allowed("lan", policy)
    assert not host_allowed("evil.example", policy)
    assert not host_allowed("evil.lan.example", policy)
    assert host_allowed("anything.example", Policy("127.0.0.1", allowed_hosts=("*",)))


@pytest.mark.parametrize(("value", "expected"), [
    ("https://UI.example", "https://ui.example"),
    ("https://ui.example:443/", "https://ui.example"),
    ("http://localhost:3000", "http://localhost:3000"),
    ("http://[::1]:80", "http://[::1]"),
    ("null", "null"),
    ("ui.example", None),
    ("https://ui.example/path", None),
    ("https://ui.example:99999", None),
    ("https://user@ui.example", None),
])
def test_normalize_origin(value, expected):
    assert normalize_origin(value) == expected


def test_origins_same_as_the_host_or_allow_listed_pass():
    assert origin_allowed("http://127.0.0.1:19234", "127.0.0.1:19234", LOOPBACK)
    assert origin_allowed("https://lmsd.example", "lmsd.example", LOOPBACK)
    assert origin_allowed("http://lmsd.example", "lmsd.example:80", LOOPBACK)
    assert not origin_allowed("http://127.0.0.1:3000", "127.0.0.1:19234", LOOPBACK)
    assert not origin_allowed("http://localhost:19234", "127.0.0.1:19234", LOOPBACK)
    assert not origin_allowed("https://evil.example", "127.0.0.1:19234", LOOPBACK)
    assert not origin_allowed("null", "127.0.0.1:19234", LOOPBACK)
    assert not origin_allowed("garbage", "127.0.0.1:19234", LOOPBACK)
    listed = Policy("127.0.0.1", allowed_origins=("http://localhost:3000", "null"))
    assert origin_allowed("http://LOCALHOST:3000", "127.0.0.1:19234", listed)
    assert origin_allowed("null", "127.0.0.1:19234", listed)
    assert origin_allowed("https://x.example", None, Policy("::1", allowed_origins=("*",)))


@pytest.mark.parametrize(("value", "expected"), [
    ("application/json", True),
    ("Application/JSON; charset=UTF-8", True),
    ("application/json;charset=\"utf8\"", True),
    ("application/json; charset=latin-1", False),
    ("text/plain;charset=UTF-8", False),
    ("application/x-www-form-urlencoded", False),
    ("multipart/form-data; boundary=x", False),
    ("application/jsonp", False),
    ("", False),
])
def test_is_json_type(value, expected):
    assert is_json_type(value) is expected


def test_clients_that_are_not_browsers_pass():
    claude_code = Headers(Host="127.0.0.1:8812", Content_Type=JSON, Accept=JSON)
    assert check(LOOPBACK, claude_code, method="POST", has_body=True) is None
    curl_get = Headers(Host="localhost:19235", Accept="*/*")
    assert check(LOOPBACK, curl_get, method="GET") is None
    curl_delete = Headers(Host="127.0.0.1:19235")
    assert check(LOOPBACK, curl_delete, method="DELETE") is None
    tail = Headers(Host="127.0.0.1:19235", Upgrade="websocket")
    assert check(LOOPBACK, tail, method="GET", websocket=True) is None
    empty_post = Headers(Host="127.0.0.1:19234")
    assert check(LOOPBACK, empty_post, method="POST", has_body=False) is None


def test_a_rebinding_request_is_refused_naming_the_host_and_the_setting():
    error = refusal(LOOPBACK, Headers(Host="evil.example:19235"), method="DELETE")
    assert error is not None and (error.status, error.type) == (403, "permission_error")
    assert "'evil.example:19235'" in error.message and "allowed_hosts" in error.message
    assert "LMSD_ALLOWED_HOSTS" in error.message and "--allowed-hosts" in error.message
    assert check(LOOPBACK, Headers(Host="evil.example"), method="GET") is not None


def test_a_cross_site_simple_post_is_refused_naming_the_origin():
    headers = Headers(Host="127.0.0.1:19234", Origin="https://evil.example",
                      Content_Type="text/plain;charset=UTF-8", Sec_Fetch_Site="cross-site")
    error = refusal(LOOPBACK, headers, method="POST", has_body=True)
    assert error is not None and (error.status, error.type) == (403, "permission_error")
    assert "'https://evil.example'" in error.message and "allowed_origins" in error.message


def test_sec_fetch_site_without_an_origin_is_refused_on_unsafe_methods():
    for site in ("cross-site", "same-site", "Cross-Site"):
        headers = Headers(Host="127.0.0.1:19235", Sec_Fetch_Site=site)
        error = refusal(LOOPBACK, headers, method="DELETE")
        assert error is not None and error.status == 403 and site.lower() in error.message
    for site in ("same-origin", "none"):
        assert check(LOOPBACK, Headers(Host="127.0.0.1", Sec_Fetch_Site=site),
                     method="DELETE") is None


def test_safe_methods_skip_the_origin_check_but_not_the_host_check():
    headers = Headers(Host="127.0.0.1:19235", Origin="https://evil.example",
                      Sec_Fetch_Site="cross-site")
    assert check(LOOPBACK, headers, method="GET") is None
    assert check(LOOPBACK, headers, method="OPTIONS") is None
    error = refusal(LOOPBACK, headers, method="GET", websocket=True)
    assert error is not None and error.status == 403 and "evil.example" in error.message


def test_an_allow_listed_origin_passes_even_cross_site():
    policy = Policy("127.0.0.1", allowed_origins=("https://ui.example",))
    headers = Headers(Host="127.0.0.1:19234", Origin="https://ui.example",
                      Sec_Fetch_Site="cross-site", Content_Type=JSON)
    assert check(policy, headers, method="POST", has_body=True) is None


@pytest.mark.parametrize("content_type", [
    "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=----x",
])
def test_bodies_that_are_not_json_get_415_naming_the_type(content_type):
    headers = Headers(Host="127.0.0.1:19234", Content_Type=content_type)
    for method in ("POST", "PUT"):
        error = refusal(LOOPBACK, headers, method=method, has_body=True)
        assert error is not None and (error.status, error.type) == (415,
                                                                    "invalid_request_error")
        assert repr(content_type) in error.message and "application/json" in error.message


def test_a_body_without_a_content_type_gets_415():
    error = refusal(LOOPBACK, Headers(Host="127.0.0.1"), method="POST", has_body=True)
    assert error is not None and error.status == 415 and "no Content-Type" in error.message


def test_the_host_is_checked_before_the_origin_and_the_body_type():
    headers = Headers(Host="evil.example", Origin="https://evil.example",
                      Content_Type="text/plain")
    error = refusal(LOOPBACK, headers, method="POST", has_body=True)
    assert error is not None and "allowed_hosts" in error.message


def test_parse_hosts_and_origins():
    assert parse_hosts(["Box.LAN", " *.lan ", "10.0.0.2", "[fd00::1]", "*", ""]) == [
        "box.lan", "*.lan", "10.0.0.2", "fd00::1", "*"]
    for bad in ("http://box.lan", "box.lan:8080", "a b", "*.", "[::1]:80"):
        with pytest.raises(ValueError):
            parse_hosts([bad])
    assert parse_origins(["https://UI.example:443", "http://localhost:3000/", "null"]) == [
        "https://ui.example", "http://localhost:3000", "null"]
    for bad in ("ui.example", "https://ui.example/app", "https://ui.example:x"):
        with pytest.raises(ValueError):
            parse_origins([bad])


