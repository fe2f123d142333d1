"""The admin API's HTTP client, which ``status``, ``sessions``, ``reset``, ``record``,
``tail`` and ``env`` share (each command is a module of its own: :mod:`.status`,
:mod:`.sessions`, :mod:`.tail`, :mod:`.env`).

Each command reads the admin address and token the way ``lmsd serve`` does (flags, then
``LMSD_*``, then the config file). A failure is one line on stderr, never a traceback:
commands raise :class:`ClientError` and the CLI prints it and exits 1.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from ..config import Settings

TIMEOUT = 10.0
ANY_HOST = {"", "0.0.0.0", "::"}


class ClientError(Exception):
    """A command failed; the message is the one line the user sees."""


def local_url(host_port: str, scheme: str = "http") -> str:
    """A URL for reaching ``host:port`` from this machine (a wildcard host is loopback)."""
    host, _, port = host_port.rpartition(":")
    host = host.strip("[]")
    if host in ANY_HOST:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def local_tls(cert: str) -> ssl.SSLContext:
    """Trust exactly ``cert`` (a self-signed one, or any certificate of its chain)."""
    context = ssl.create_default_context(cafile=cert)
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


@dataclass
class Admin:
    """Where the admin API is and how to authenticate to it."""

    listen: str
    token: str = ""
    tls_cert: str = ""  # lmsd speaks https with this certificate

    @classmethod
    def from_settings(cls, settings: Settings) -> Admin:
        return cls(settings.admin_listen, settings.admin_token, settings.tls_cert)

    @property
    def url(self) -> str:
        return local_url(self.listen, "https" if self.tls_cert else "http")

    def verify(self) -> ssl.SSLContext | bool:
        """This machine's lmsd by its own certificate (pinned: the host name is not
        checked, the address is the one lmsd binds)."""
        return local_tls(self.tls_cert) if self.tls_cert else True

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def not_running(self) -> ClientError:
        return ClientError(f"the daemon is not running (nothing answers at {self.url}); "
                           f"start it with: lmsd serve")

    def refused(self) -> ClientError:
        if self.token:
            return ClientError("the admin API refused the token (check LMSD_ADMIN_TOKEN)")
        return ClientError("the admin API refused the token (set LMSD_ADMIN_TOKEN)")

    def request(self, method: str, path: str) -> Any:
        """Call the admin API; return the decoded JSON or raise ClientError."""
        try:
            with httpx.Client(base_url=self.url, headers=self.headers(), timeout=TIMEOUT,
                              verify=self.verify()) as client:
                response = client.request(method, path)
        except httpx.ConnectError:
            raise self.not_running() from None
        except httpx.TimeoutException:
            raise ClientError(f"the daemon at {self.url} did not answer within "
                              f"{TIMEOUT:g}s") from None
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot talk to the admin API at {self.url}: "
                              f"{exc or type(exc).__name__}") from None
        if response.status_code == 401:
            raise self.refused()
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            message = data.get("error", {}).get("message") if isinstance(data, dict) else None
            raise ClientError(f"{message or 'the admin API failed'} "
                              f"(HTTP {response.status_code} from {self.url}{path})")
        if data is None:
            raise ClientError(f"{self.url}{path} did not answer JSON; is that lmsd?")
        return data
