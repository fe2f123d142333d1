"""The dashboard page the admin API serves at ``/``: one HTML document with its CSS and
JavaScript inlined from ``static/`` (so the bearer token, when one is set, guards a single
request, and the page works offline with no build step).

The Content-Security-Policy allows exactly the inlined script and style (by hash) and
connections to this origin, so nothing injected into the page could run or phone out.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib.resources import files

_STATIC = files(__package__).joinpath("static")


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@cache
def page() -> tuple[bytes, dict[str, str]]:
    """The page's bytes and the headers it must be served with."""
    html = _STATIC.joinpath("index.html").read_text("utf-8")
    css = _STATIC.joinpath("dash.css").read_text("utf-8")
    js = _STATIC.joinpath("dash.js").read_text("utf-8")
    body = html.replace("/*CSS*/", css, 1).replace("/*JS*/", js, 1)
    csp = (f"default-src 'none'; script-src {_hash(js)}; style-src {_hash(css)}; "
           "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'")
    return body.encode(), {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": csp,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",  # the address may carry ?token=
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }
