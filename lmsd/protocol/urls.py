"""Upstream URLs may carry credentials (``http://user:pass@host:1234``, ``?api_key=...``).

They are sent, never shown: ``split_credentials`` takes the user and password out of the
URL (the client sends them as basic auth), and ``display_url`` / ``url_name`` are the only
forms that reach the log, ``/status``, ``/upstreams``, metric labels, the store and file
names.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
#: Query parameters whose value is a secret (matched as substrings of the lower-cased name).
SECRET_QUERY_WORDS = ("key", "token", "secret", "password", "passwd", "pwd", "auth", "sig",
                      "credential")


def _host(netloc: str) -> str:
    """``netloc`` without its userinfo (``user:pass@``)."""
    return netloc.rpartition("@")[2]


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(``url`` without its userinfo, (user, password) decoded, or None when it has none)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo = parts.netloc.rpartition("@")[0]
    user, _, password = userinfo.partition(":")
    clean = urlunsplit(parts._replace(netloc=_host(parts.netloc)))
    return clean, (unquote(user), unquote(password))


def _masked_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(any(w in name.lower() for w in SECRET_QUERY_WORDS) for name, _ in pairs):
        return query
    return urlencode([(name, MASK if any(w in name.lower() for w in SECRET_QUERY_WORDS)
                       else value) for name, value in pairs], safe="*")


def display_url(url: str) -> str:
    """``url`` fit to show: the password masked (``http://user:***@host``; a lone
    ``token@`` becomes ``***@``), and the values of
    secret-looking query parameters (``api_key``, ``token``...) masked. Anything that is
    not a URL comes back as it is (``auto``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        user, colon, _ = netloc.rpartition("@")[0].partition(":")
        # ``token@host`` (no colon): the user part is the secret
        netloc = f"{user}:{MASK}@{_host(netloc)}" if user and colon else f"{MASK}@{_host(netloc)}"
    query = _masked_query(parts.query) if parts.query else ""
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def url_name(url: str) -> str:
    """``host:port`` of ``url`` (no userinfo at all): how an upstream without a name is
    named, in metric labels, the store and slot file names."""
    return _host(urlsplit(url).netloc) or url


_USERINFO = re.compile(r"(//[^/\s:@]*):[^@\s/]*@")


def scrub(text: str) -> str:
    """``text`` (an error message that may quote a URL) with every URL password masked."""
    return _USERINFO.sub(rf"\1:{MASK}@", text)
