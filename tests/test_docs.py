"""The reference in docs/ names every setting and every command, so it cannot fall behind
the code (the MkDocs build in CI checks its links and anchors)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from lmsd.cli import build_parser
from lmsd.config import FIELDS, Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_every_setting_is_in_the_configuration_table() -> None:
    table = (DOCS / "configuration.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)`", table, re.M))
    settings = Settings()
    missing = [name for name in FIELDS if name not in documented]
    assert missing == [], f"settings missing from docs/configuration.md: {missing}"
    # FIELDS is every setting: each section's fields, each readable by its flat name
    assert sorted(FIELDS) == sorted(f for section in vars(settings).values()
                                    if hasattr(section, "__dataclass_fields__")
                                    for f in section.__dataclass_fields__)
    assert len(FIELDS) == 55


@pytest.mark.parametrize("command", _commands())
def test_every_command_is_in_the_command_line_page(command: str) -> None:
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert re.search(rf"^lmsd {command}\b", page, re.M), \
        f"`lmsd {command}` is missing from docs/cli.md"


def test_the_readme_links_only_to_pages_that_exist() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert targets, "the README points into docs/"
    assert [t for t in targets if not (DOCS.parent / t).exists()] == []


def test_the_lm_studio_two_model_example_is_a_valid_config(tmp_path) -> None:
    import tomllib

    from lmsd.config import load_settings

    section = (DOCS / "models.md").read_text(encoding="utf-8").split(
        "## LM Studio: two models", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block, "docs/models.md has the LM Studio example"
    tomllib.loads(block.group(1))
    config = tmp_path / "lmsd.toml"
    config.write_text(block.group(1))
    settings = load_settings({"config": str(config)}, {})
    assert settings.memory_budget == 22 * 1024**3 and settings.model_ttl == 3600
    groups = {m.name: (m.group, m.pinned) for m in settings.models}
    assert groups == {"qwen/qwen3-coder-30b": ("main", False),
                      "mistralai/devstral-small-2507": ("main", False),
                      "qwen/qwen3-4b": ("", True)}


def test_the_readmes_two_model_configs_are_valid(tmp_path) -> None:
    from lmsd.config import load_settings

    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Two models, loaded on demand", 1)[1].split("\n## ", 1)[0]
    lm_studio, llama_server = re.findall(r"```toml\n(.*?)```", section, re.S)
    for text in (lm_studio, llama_server):
        config = tmp_path / "lmsd.toml"
        config.write_text(text)
        settings = load_settings({"config": str(config)}, {})
        assert len(settings.models) == 2
    assert all(m.started and "--slot-save-path" in m.command for m in settings.models)
