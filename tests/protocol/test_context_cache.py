"""The context fingerprint is remembered per distinct system prompt and tools
(``chain.ContextCache``): the same digest as computing it afresh, a different one for any
change JSON text would show, and a bounded number of contexts kept."""

from __future__ import annotations

import copy

import pytest

from lmsd.protocol.chain import ContextCache, _digest, _dumps

TOOLS = [{"type": "function", "name": "Bash", "description": "run a command",
          "parameters": {"type": "object", "properties": {"command": {"type": "string"},
                                                          "timeout": {"default": 1}}}}]


def fresh(model, instructions, tools, choice=None):
    return _digest(_dumps([model, instructions, tools, choice]))


def test_a_hit_gives_the_digest_computed_afresh_and_skips_the_encoding(monkeypatch):
    cache = ContextCache()
    first = cache.fingerprint("m", "sys", TOOLS, "auto")
    assert first == fresh("m", "sys", TOOLS, "auto")
    encoded = []
    monkeypatch.setattr("lmsd.protocol.chain._dumps", lambda v: encoded.append(v) or "x")
    # the next turn's request: equal values, parsed anew (other objects)
    assert cache.fingerprint("m", "sys", copy.deepcopy(TOOLS), "auto") == first
    assert encoded == []


@pytest.mark.parametrize("change", [
    lambda t: t[0].update(name="Read"),
    lambda t: t[0]["parameters"]["properties"]["timeout"].update(default=True),  # 1 == True
    lambda t: t[0]["parameters"]["properties"]["timeout"].update(default=1.0),  # 1 == 1.0
    lambda t: t[0].update(parameters=dict(reversed(t[0]["parameters"].items()))),  # order
])
def test_any_change_json_text_shows_is_a_new_context(change):
    cache = ContextCache()
    first = cache.fingerprint("m", "sys", TOOLS, None)
    changed = copy.deepcopy(TOOLS)
    change(changed)
    digest = cache.fingerprint("m", "sys", changed, None)
    assert digest != first and digest == fresh("m", "sys", changed, None)
    assert cache.fingerprint("m", "sys", TOOLS, "none") == fresh("m", "sys", TOOLS, "none")
    assert cache.fingerprint("m2", "sys", TOOLS, None) == fresh("m2", "sys", TOOLS, None)


def test_the_cache_is_bounded_least_recently_used_first():
    cache = ContextCache(size=3)
    for n in range(5):
        cache.fingerprint("m", f"sys {n}", TOOLS, None)
    assert len(cache) == 3
    cache.fingerprint("m", "sys 2", TOOLS, None)  # used again: kept
    cache.fingerprint("m", "sys 9", TOOLS, None)
    kept = {key[1] for key in cache._entries}
    assert kept == {"sys 2", "sys 4", "sys 9"}
