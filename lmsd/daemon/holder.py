"""Who holds a port lmsd cannot listen on: another lmsd (the usual case: a service and a
``lmsd serve`` started by hand), some other HTTP server, or something that says nothing.

Asked over HTTP with a short timeout, never with a key or token (the holder may be
anyone's program): the proxy's ``/`` answers ``{"service": "lmsd", "version": ...}``, the
admin API's ``/healthz`` ``{"status": "ok", "version": ...}`` (or a 401 when it has a
token). This only identifies: a TLS port's certificate is not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import trio

PROBE_SECONDS = 1.0
#: What lmsd's admin API says to a request without its token.
_ADMIN_401 = "the admin API needs Authorization"


@dataclass(frozen=True)
class Holder:
    """What answered on the port: ``lmsd`` (its version, if it said), or another
    program (its ``Server`` header, if any)."""

    lmsd: bool
    version: str | None = None
    server: str | None = None


def probe_url(bind: str, *, https: bool) -> str:
    """The URL that reaches ``bind`` (``host:port``) from this machine: a wildcard
    address is asked on loopback."""
    host, _, port = bind.rpartition(":")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
    return f"{'https' if https else 'http'}://{host}:{port}"


async def who_holds(bind: str, *, https: bool, timeout: float = PROBE_SECONDS
                    ) -> Holder | None:
    """The program answering HTTP on ``bind``; None if nothing answered in ``timeout``
    (a socket that listens and never replies, a program that speaks something else)."""
    async with httpx.AsyncClient(base_url=probe_url(bind, https=https), timeout=timeout,
                                 verify=False, trust_env=False) as http:
        with trio.move_on_after(timeout * 3):
            try:
                root = await http.get("/")
            except httpx.HTTPError:
                return None
            found = _lmsd(root, "service")
            if found is not None:
                return found
            try:
                found = _lmsd(await http.get("/healthz"), "status")
            except httpx.HTTPError:
                found = None
            return found or Holder(False, server=root.headers.get("server"))
    return None


def _lmsd(answer: httpx.Response, field: str) -> Holder | None:
    """lmsd's answer on its proxy's ``/`` (``field`` service) or admin ``/healthz``
    (``field`` status), else None."""
    try:
        body: Any = answer.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    version = body.get("version") if isinstance(body.get("version"), str) else None
    if answer.status_code == 200 and version and body.get(field) == {
            "service": "lmsd", "status": "ok"}[field]:
        return Holder(True, version)
    error = body.get("error")
    message = error.get("message") if isinstance(error, dict) else error
    if answer.status_code == 401 and isinstance(message, str) \
            and message.startswith(_ADMIN_401):
        return Holder(True)
    return None


def in_use_message(where: str, reason: str, holder: Holder | None, flag: str) -> str:
    """The startup line for a port in use: ``where`` is ``cannot listen on ADDR (key)``,
    ``reason`` the system's words, ``flag`` the option that picks another port."""
    if holder is None:
        return f"{where}: {reason}"
    if holder.lmsd:
        version = f" ({holder.version})" if holder.version else ""
        return (f"{where}: another lmsd{version} is already serving there; stop it "
                f"(`lmsd service status` / the other `lmsd serve`) or choose another port "
                f"with {flag}")
    server = f" ({_printable(holder.server)})" if holder.server else ""
    return f"{where}: {reason}: held by another program, an HTTP server{server}"


def _printable(text: str) -> str:
    """A header from anyone, fit for one line."""
    shown = "".join(c if c.isprintable() else "?" for c in text)
    return shown if len(shown) <= 60 else shown[:57] + "..."
