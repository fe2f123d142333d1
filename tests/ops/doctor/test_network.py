"""``lmsd doctor``'s network line: a key used off loopback without TLS is a warning."""

from __future__ import annotations

from pathlib import Path

from lmsd.config import load_settings
from lmsd.ops.doctor.network import check_network

KEYS = "laptop=laptop-key-0123456789abcdef"


def network(tmp_path: Path, **flags: str):
    return check_network(load_settings({"state_dir": str(tmp_path), **flags}, {}))


def pem(tmp_path: Path) -> dict[str, str]:
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("-----BEGIN X-----\n")
    return {"tls_cert": str(tmp_path / "cert.pem"), "tls_key": str(tmp_path / "key.pem")}


def test_loopback_is_fine_and_names_the_clients(tmp_path):
    assert (network(tmp_path).status, network(tmp_path).detail) == ("ok", "loopback only")
    named = network(tmp_path, client_keys=KEYS)
    assert (named.status, named.detail) == ("ok", "loopback only; client keys: laptop")


def test_a_key_off_loopback_without_tls_warns(tmp_path):
    result = network(tmp_path, listen="0.0.0.0:19234", client_keys=KEYS)
    assert result.status == "warn"
    assert "over plain HTTP" in result.detail and "laptop" in result.detail
    assert "laptop-key" not in result.detail + str(result.fix)
    assert result.fix is not None and "tls_cert" in result.fix


def test_an_admin_token_off_loopback_without_tls_warns(tmp_path):
    result = network(tmp_path, admin_listen="0.0.0.0:19235")
    assert result.status == "warn" and "admin API" in result.detail


def test_keys_over_tls_are_fine(tmp_path):
    result = network(tmp_path, listen="0.0.0.0:19234", client_keys=KEYS, **pem(tmp_path))
    assert (result.status, result.detail) == ("ok", "shared on the network over https; "
                                                    "client keys: laptop")


def test_a_trusted_network_warns(tmp_path):
    result = network(tmp_path, listen="0.0.0.0:19234", trusted_network="true")
    assert result.status == "warn" and "without a key" in result.detail


def test_a_keys_file_others_can_read_warns(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(KEYS + "\n")
    keys.chmod(0o644)
    result = network(tmp_path, client_keys_file=str(keys))
    assert result.status == "warn" and result.fix == f"chmod 600 {keys}"
    keys.chmod(0o600)
    assert network(tmp_path, client_keys_file=str(keys)).status == "ok"
