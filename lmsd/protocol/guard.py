"""Which requests a web page could have sent, and must be refused. Pure decisions.

A page in the user's browser can reach lmsd on loopback in two ways:

- DNS rebinding: ``evil.example`` re-resolves to 127.0.0.1, so the page's requests are
  same-origin for the browser, and it can read the answers. They still carry
  ``Host: evil.example``: only names that are lmsd's own are accepted.
- Cross-site "simple" requests (a form post, a ``text/plain`` fetch) need no CORS
  preflight: lmsd accepts bodies only as ``application/json`` (which always needs one) and
  refuses state-changing requests whose ``Origin`` (or ``Sec-Fetch-Site``) says another
  site sent them.

Clients that are not browsers (Claude Code, the SDKs, curl) send a Host that names where
they connect and no Origin, so none of this touches them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from .failures import Failure, Forbidden, UnsupportedMedia

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")
_SETTING_HOSTS = "allowed_hosts (LMSD_ALLOWED_HOSTS, --allowed-hosts)"
_SETTING_ORIGINS = "allowed_origins (LMSD_ALLOWED_ORIGINS, --allowed-origins)"


@dataclass(frozen=True)
class Policy:
    """What one listener accepts.

    ``listen_host`` is the host it is bound to (a wildcard accepts any IP address: a
    rebinding attack needs a name), ``machine_names`` this machine's host names.
    """

    listen_host: str
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    machine_names: tuple[str, ...] = ()


def split_host(value: str) -> tuple[str, int | None] | None:
    """``Host``-header syntax to (lowercase host without brackets or final dot, port).

    None when it is not a host name, an IPv4 address or a bracketed IPv6 address."""
    text = value.strip().lower()
    port: int | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not _is_ip(host) or ":" not in host:
            return None
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None
            port = int(rest[1:])
        return host, port
    host, sep, port_text = text.partition(":")
    if sep:
        if not port_text.isdigit():
            return None
        port = int(port_text)
    host = host.removesuffix(".")
    if not _NAME.fullmatch(host):
        return None
    return host, port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback_host(host: str) -> bool:
    """``localhost`` or an address in 127.0.0.0/8 or ::1 (host as from split_host)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_allowed(host_header: str | None, policy: Policy) -> bool:
    """No Host (HTTP/1.0, not a browser) passes; otherwise it must name lmsd."""
    if host_header is None:
        return True
    parsed = split_host(host_header)
    if parsed is None:
        return False
    host = parsed[0]
    listen = policy.listen_host.strip("[]").lower()
    if is_loopback_host(host) or host == listen or host in policy.machine_names:
        return True
    if listen in WILDCARD_HOSTS and _is_ip(host):
        return True
    return any(_host_matches(host, entry) for entry in policy.allowed_hosts)


def _host_matches(host: str, entry: str) -> bool:
    if entry == "*":
        return True
    if entry.startswith("*."):
        return host.endswith(entry[1:])
    return host == entry


def normalize_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lowercase, without a default port; "null" and "*" stay.

    None when it is not an origin (it has a path, no host, or a bad port)."""
    text = value.strip().lower()
    if text in ("null", "*"):
        return text
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or parts.path not in ("", "/") or \
            parts.query or parts.fragment or parts.username is not None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


def origin_allowed(origin: str, host_header: str | None, policy: Policy) -> bool:
    """The request's own origin (a page served under the same host and port), or one of
    ``allowed_origins``."""
    normal = normalize_origin(origin)
    if normal is None:
        return False
    if "*" in policy.allowed_origins or normal in policy.allowed_origins:
        return True
    if normal == "null" or host_header is None:
        return False
    scheme, _, netloc = normal.partition("://")
    own = split_host(host_header)
    theirs = split_host(netloc)
    if own is None or theirs is None:
        return False
    default = _DEFAULT_PORTS.get(scheme)
    return own[0] == theirs[0] and (own[1] or default) == (theirs[1] or default)


def is_json_type(content_type: str) -> bool:
    """``application/json``, with no charset or UTF-8."""
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "application/json":
        return False
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and \
                value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def check(
    policy: Policy,
    headers: Mapping[str, str],
    *,
    method: str,
    websocket: bool = False,
    has_body: bool = False,
) -> Failure | None:
    """The refusal for a request that a web page could have sent, or None to serve it.

    ``headers`` must look names up case-insensitively (as HTTP header maps do)."""
    host = headers.get("Host")
    if not host_allowed(host, policy):
        return Forbidden(
            f"Host {host!r} is not a name of this lmsd, so a web page may be reaching it "
            f"through DNS rebinding; if you reach lmsd under that name, add it to "
            f"{_SETTING_HOSTS}")
    origin = headers.get("Origin")
    if websocket or method.upper() not in SAFE_METHODS:
        if origin is not None and not origin_allowed(origin, host, policy):
            return Forbidden(
                f"requests from the web page at Origin {origin!r} are refused; to let that "
                f"page use lmsd, add its origin to {_SETTING_ORIGINS}")
        site = (headers.get("Sec-Fetch-Site") or "").strip().lower()
        if origin is None and site in ("cross-site", "same-site"):
            return Forbidden(
                f"a browser sent this request from another site (Sec-Fetch-Site: {site}) "
                f"without an Origin lmsd accepts; to let a page use lmsd, add its origin "
                f"to {_SETTING_ORIGINS}")
    if method.upper() in ("POST", "PUT", "PATCH"):
        content_type = headers.get("Content-Type")
        if content_type is None and has_body:
            return UnsupportedMedia(
                "the request body has no Content-Type: send JSON with Content-Type: "
                "application/json")
        if content_type is not None and not is_json_type(content_type):
            return UnsupportedMedia(
                f"Content-Type {content_type!r} is not supported: send the body as JSON "
                f"with Content-Type: application/json")
    return None


def parse_hosts(entries: Iterable[str]) -> list[str]:
    """``allowed_hosts`` entries: names or IP addresses (no port: any port is accepted),
    ``*.example.com`` for a domain's names, ``*`` for any. Raises ValueError."""
    hosts = []
    for entry in entries:
        text = entry.strip().lower()
        if not text or text == "*" or _is_ip(text.strip("[]")):
            hosts.extend([text.strip("[]")] if text else [])
            continue
        wildcard = "*." if text.startswith("*.") else ""
        parsed = split_host(text.removeprefix("*."))
        if parsed is None or parsed[1] is not None:
            raise ValueError(f"{entry!r}: expected a host name, *.domain or an IP address, "
                             f"without a port (any port is accepted)")
        hosts.append(wildcard + parsed[0])
    return hosts


def parse_origins(entries: Iterable[str]) -> list[str]:
    """``allowed_origins`` entries: ``scheme://host[:port]``, ``null`` or ``*``."""
    origins = []
    for entry in entries:
        if not entry.strip():
            continue
        normal = normalize_origin(entry)
        if normal is None:
            raise ValueError(f"{entry!r}: expected an origin like https://example.com or "
                             f"http://localhost:3000")
        origins.append(normal)
    return origins
