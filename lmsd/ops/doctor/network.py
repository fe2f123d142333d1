"""``lmsd doctor``'s network check: who can reach the ports, with what key, in clear or not.

A proxy shared on a network takes client keys; keys (and the admin token) sent over plain
HTTP can be read by anyone on the path, so a key used off loopback without TLS is a warning.
"""

from __future__ import annotations

import os

from ...config import Settings, env_name
from ...protocol.guard import is_loopback_host
from .result import OK, WARN, Result

CHECK = "network"
TLS_FIX = (f"set tls_cert and tls_key ({env_name('tls_cert')}, {env_name('tls_key')}) to a "
           "certificate and its key so both ports speak https")


def _loopback(host_port: str) -> bool:
    return is_loopback_host(host_port.rpartition(":")[0].strip("[]"))


def check_network(settings: Settings) -> Result:
    """Whether the proxy and the admin API are shared, and whether safely."""
    proxy_out, admin_out = not _loopback(settings.listen), not _loopback(settings.admin_listen)
    tls = bool(settings.tls_cert)
    names = ", ".join(sorted(settings.client_keys))
    keys_file = settings.client_keys_file
    if keys_file and os.path.exists(keys_file) and os.stat(keys_file).st_mode & 0o077:
        return Result(CHECK, WARN, f"client_keys_file {keys_file} is readable by other users",
                      f"chmod 600 {keys_file}")
    if proxy_out and not settings.client_keys:
        return Result(CHECK, WARN, f"the proxy ({settings.listen}) serves everyone who can "
                      "reach it, without a key (trusted_network)",
                      f"set client_keys ({env_name('client_keys')}=name=key) unless every "
                      "machine on that network may use it")
    if proxy_out and not tls:
        return Result(CHECK, WARN, f"client keys ({names}) reach the proxy "
                      f"({settings.listen}) over plain HTTP: anyone on the path can read them",
                      TLS_FIX)
    if admin_out and not tls:
        return Result(CHECK, WARN, f"the admin token reaches the admin API "
                      f"({settings.admin_listen}) over plain HTTP", TLS_FIX)
    if proxy_out or admin_out:
        return Result(CHECK, OK, "shared on the network over https"
                      + (f"; client keys: {names}" if names else ""))
    return Result(CHECK, OK, "loopback only" + (f"; client keys: {names}" if names else ""))
