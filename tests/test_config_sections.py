"""Settings in sections: each setting declared once in the section of the part that reads it,
flat names forwarding to it, and a part holding its section seeing SIGHUP's live changes."""

from __future__ import annotations

from dataclasses import fields

import pytest

from lmsd.config import (
    FIELDS,
    PARSERS,
    SECTIONS,
    CacheSettings,
    ConfigError,
    Settings,
    WatchSettings,
    load_settings,
)
from lmsd.config.parsers import boolean


def test_every_setting_is_in_exactly_one_section_with_a_parser_and_a_help_line() -> None:
    declared = [f.name for kind in SECTIONS.values() for f in fields(kind)]
    assert len(declared) == len(set(declared)) == len(FIELDS) == 55
    for name, spec in FIELDS.items():
        assert spec.spec.help.strip(), name
        assert PARSERS[name] is spec.spec.parse
    assert FIELDS["keep_warm"].section == "cache"
    assert FIELDS["poll_interval"].section == "watcher"


def test_a_flat_name_reads_and_writes_its_sections_field() -> None:
    settings = Settings(keep_warm=False, poll_interval=2.5)
    assert isinstance(settings.cache, CacheSettings)
    assert settings.cache.keep_warm is False and settings.keep_warm is False
    assert settings.watcher == WatchSettings(poll_interval=2.5)
    held = settings.watcher  # what a part holds
    settings.min_context = 8192  # what SIGHUP's reload does for a live key
    assert held.min_context == 8192


def test_an_unknown_setting_is_refused() -> None:
    with pytest.raises(TypeError, match="min_contxt"):
        Settings(min_contxt=1)


def test_replace_copies_into_new_sections_and_leaves_the_original() -> None:
    settings = Settings(model="a")
    other = settings.replace(model="b", watch=False)
    assert (settings.model, settings.watch) == ("a", True)
    assert (other.model, other.watch) == ("b", False)
    assert other.naming is not settings.naming
    assert other != settings and settings.replace() == settings


def test_defaults_are_fresh_per_settings() -> None:
    first, second = Settings(), Settings()
    first.affinity_headers.append("x-mine")
    first.model_map["opus"] = "m"
    assert "x-mine" not in second.affinity_headers and second.model_map == {}


def test_each_field_parses_its_own_values_from_every_source(tmp_path) -> None:
    config = tmp_path / "lmsd.toml"
    config.write_text("keep_warm = false\nslot_save_files = 2\n")
    settings = load_settings({"poll_interval": "7"}, {"LMSD_CONFIG": str(config),
                                                      "LMSD_MIN_CONTEXT": "4096"})
    assert settings.cache == CacheSettings(keep_warm=False, slot_save_files=2)
    assert settings.watcher == WatchSettings(min_context=4096, poll_interval=7.0)
    assert FIELDS["keep_warm"].spec.parse is boolean
    with pytest.raises(ConfigError, match="slot_save_files: must be positive"):
        load_settings({}, {"LMSD_SLOT_SAVE_FILES": "0"})


def test_models_on_demand_are_read_from_the_file_with_their_budget(tmp_path) -> None:
    config = tmp_path / "lmsd.toml"
    config.write_text('memory_budget = "22GiB"\nmodel_ttl = 600\n'
                      '[[models]]\nname = "coder"\ngroup = "main"\n'
                      '[[upstreams]]\nurl = "http://127.0.0.1:1234"\nmemory_budget = "8GB"\n')
    settings = load_settings({"config": str(config)}, environ={})
    assert settings.memory_budget == 22 * 1024**3 and settings.model_ttl == 600.0
    assert [m.name for m in settings.models] == ["coder"]
    assert settings.on_demand.models[0].group == "main"
    assert settings.upstreams[0].memory_budget == 8_000_000_000
    bad = tmp_path / "bad.toml"
    bad.write_text('[[models]]\nname = "a"\nmemory = "lots"\n')
    with pytest.raises(ConfigError, match=r"models: \[0\] memory: expected a size"):
        load_settings({"config": str(bad)}, environ={})
