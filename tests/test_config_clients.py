"""The settings of a proxy shared on a network (issue 22): client keys from the file, the
environment and a keys file; the refusal to serve off loopback without them."""

from __future__ import annotations

import pytest

from lmsd.config import ConfigError, load_settings, redacted
from lmsd.daemon.supervisor import check_security

A, B = "a" * 20, "b" * 20


def test_keys_from_a_toml_table_the_environment_and_a_keys_file(tmp_path):
    config = tmp_path / "lmsd.toml"
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"ci={B}\n")
    config.write_text(f'client_keys_file = "{keys_file}"\n[client_keys]\nlaptop = "{A}"\n')
    assert load_settings({"config": str(config)}, {}).client_keys == {"laptop": A, "ci": B}
    env = {"LMSD_CLIENT_KEYS": f"laptop={A},ci={B}"}
    assert load_settings({}, env).client_keys == {"laptop": A, "ci": B}
    config.write_text(f'client_keys = ["laptop={A}"]\n')
    assert load_settings({"config": str(config)}, {}).client_keys == {"laptop": A}


def test_a_bad_key_is_one_line_naming_the_setting_not_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^environment LMSD_CLIENT_KEYS: client_keys: .*"
                                          "shorter than 16"):
        load_settings({}, {"LMSD_CLIENT_KEYS": "laptop=hunter2"})
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"laptop={A}\n")
    with pytest.raises(ConfigError, match=r"^client_keys_file .*: two keys are named") as e:
        load_settings({"client_keys_file": str(keys_file)}, {"LMSD_CLIENT_KEYS": f"laptop={B}"})
    assert A not in str(e.value) and B not in str(e.value)
    with pytest.raises(ConfigError, match=r"^client_keys_file .*missing: not found"):
        load_settings({"client_keys_file": str(tmp_path / "missing")}, {})


def test_keys_are_masked_in_the_redacted_settings():
    shown = redacted(load_settings({}, {"LMSD_CLIENT_KEYS": f"laptop={A}"}))
    assert shown["client_keys"] == {"laptop": "***"}


@pytest.mark.parametrize(("flags", "refused"), [
    ({"listen": "0.0.0.0:19234"}, True),
    ({"listen": "192.168.1.5:19234"}, True),
    ({"listen": "[::]:19234"}, True),
    ({"listen": "0.0.0.0:19234", "trusted_network": "true"}, False),
    ({"listen": "127.0.0.1:19234"}, False),
    ({"listen": "localhost:19234"}, False),
])
def test_the_proxy_off_loopback_needs_keys_or_a_trusted_network(flags, refused):
    settings = load_settings(flags, {})
    if refused:
        with pytest.raises(ConfigError, match="is not a loopback address: set client_keys"):
            check_security(settings)
    else:
        check_security(settings)
    settings.client_keys = {"laptop": A}
    check_security(settings)
