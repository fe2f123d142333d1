"""``lmsd models``: its table over a fake view (memory, idle, markers, budgets, a hostile
name), and run as a real subprocess against an in-process lmsd and the LM Studio emulator."""

from __future__ import annotations

import json

from lmsd.ops.models import format_models
from lmsd.ops.text import size
from tests.ops.lmsd_cli import MODEL, admin_address, ok, run

GIB = 1024**3


def row(name: str, **fields) -> dict:
    base = {"name": name, "upstream": "lmstudio", "loaded": False, "state": "not loaded",
            "memory_bytes": 0, "context_length": None, "idle_s": None, "in_flight": 0,
            "group": "", "pinned": False, "ttl_s": 0.0, "by_lmsd": False, "loads": 0,
            "last_load_s": None, "started": False}
    return {**base, **fields}


def test_a_view_as_a_table_with_markers_and_budgets():
    view = {"models": [
        row("qwen/qwen3-coder-30b", loaded=True, state="loaded", memory_bytes=17 * GIB,
            context_length=32768, idle_s=192.7, in_flight=2, group="main", pinned=True),
        row("small", upstream="llama", state="loading", memory_bytes=512 * 1024**2,
            ttl_s=600.0, by_lmsd=True, started=True, pid=4242, url="http://127.0.0.1:9"),
        row("google/gemma-3-12b", by_lmsd=True, loads=1)],
        "budgets": [{"upstream": "lmstudio", "budget_bytes": 22 * GIB,
                     "used_bytes": 18 * GIB},
                    {"upstream": "llama", "budget_bytes": 8 * GIB, "used_bytes": 0}]}
    assert format_models(view).splitlines() == [
        "NAME                  UPSTREAM  STATE       MEMORY     CONTEXT  IDLE    IN FLIGHT"
        "  NOTES",
        "qwen/qwen3-coder-30b  lmstudio  loaded      17.0 GiB   32768    3m 12s  2"
        "          pinned, group main",
        "small                 llama     loading     512.0 MiB  -        -       0"
        "          ttl 10m, started (pid 4242)",
        "google/gemma-3-12b    lmstudio  not loaded  -          -        -       0"
        "          loaded by lmsd",
        "budget lmstudio: 18.0 GiB of 22.0 GiB",
        "budget llama: 0 B of 8.0 GiB"]


def test_no_models_says_so():
    assert format_models({"models": [], "budgets": []}) == "no models: no upstream lists any"


def test_a_name_with_terminal_escapes_is_shown_escaped():
    """A model name comes from the engine: it must not clear or retitle the terminal."""
    text = format_models({"models": [row("evil\x1b]0;pwned\x07\x1b[2J", group="g\x1b[31m")]})
    assert "\x1b" not in text and "\x07" not in text
    assert "evil\\x1b]0;pwned\\x07\\x1b[2J" in text and "group g\\x1b[31m" in text


def test_sizes_for_people():
    assert [size(n) for n in (None, 0, 900, 2048, 512 * 1024**2, 17 * GIB, 3 * 1024**4)] == [
        "-", "-", "900 B", "2.0 KiB", "512.0 MiB", "17.0 GiB", "3.0 TiB"]


async def test_models_pretty_and_json(lmsd, emulator):
    address = admin_address(lmsd)
    name = lmsd.router.backends[0].name
    lines = ok(await run("models", "--admin-listen", address)).splitlines()
    assert lines[0].split() == ["NAME", "UPSTREAM", "STATE", "MEMORY", "CONTEXT", "IDLE",
                                "IN", "FLIGHT", "NOTES"]
    # memory: LM Studio's size_bytes (the emulator says 17,000,000,000 for each)
    assert lines[1].split() == [MODEL, name, "loaded", "15.8", "GiB", "32768", "-", "0", "-"]
    assert lines[2].split() == ["google/gemma-3-12b", name, "not", "loaded", "15.8", "GiB",
                                "-", "-", "0", "-"]
    assert len(lines) == 3  # no budget is set
    data = json.loads(ok(await run("models", "--json", "--admin-listen", address)))
    assert [(r["name"], r["loaded"]) for r in data["models"]] == [
        (MODEL, True), ("google/gemma-3-12b", False)]
    assert data["budgets"] == []
