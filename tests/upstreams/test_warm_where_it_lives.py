"""A conversation lives on one upstream, the one its last request went to: the upstream it
left after a failover or a move frees its slot, drops its file and never warms it (a full
cold prefill on a box that no longer serves it). Pure: no engine is asked anything."""

from __future__ import annotations

import time
from typing import Any

from lmsd.config import CacheSettings
from lmsd.sessions.recent import RecentRequest, RecentRequests
from lmsd.upstreams.cache.keeper import CacheKeeper
from lmsd.upstreams.cache.slots import SlotSetup, SlotTable

CONV = "s-one/main"


def request(upstream: str, at: float, conversation: str = CONV) -> RecentRequest:
    """``at``: seconds after this test started (recent enough to be warmed)."""
    return RecentRequest(upstream, conversation, "/v1/chat/completions",
                         {"messages": [{"role": "user", "content": upstream}]},
                         time.time() - 10 + at)


def test_noting_a_conversation_on_one_upstream_forgets_it_on_the_others():
    recent = RecentRequests(None)
    recent.note(request("a", 1.0))
    recent.note(request("a", 1.5, "s-two/main"))
    recent.note(request("b", 2.0))  # it failed over to b
    assert recent.get("a", CONV) is None and recent.get("b", CONV) is not None
    assert recent.where(CONV) == "b" and recent.where("s-two/main") == "a"
    assert [r.conversation for r in recent.latest("a", 10)] == ["s-two/main"]
    assert recent._pending[("a", CONV)] is None  # deleted from the store too


def keeper(name: str, recent: RecentRequests, table: SlotTable | None = None) -> CacheKeeper:
    kept = CacheKeeper(name, upstream=Any, settings=CacheSettings(), recent=recent)  # type: ignore
    kept.state.table = table
    return kept


def test_the_upstream_a_conversation_left_releases_its_slot_and_file_and_warms_nothing():
    recent = RecentRequests(None)
    table = SlotTable(SlotSetup(slots=1, can_save=True))
    a = keeper("a", recent, table)
    recent.note(request("a", 1.0))
    table.take(CONV, 1.0)
    table.done(CONV, 0, 1.0)
    table.file_for(CONV)
    table.saved(0, CONV)
    assert table.holder(0) == CONV and table.restorable(CONV)
    recent.note(request("b", 2.0))  # the failover's turn, kept by b's keeper
    a.lost("the engine restarted (its slots are empty)")
    assert a.to_json()["queued"] == []  # no restore, no replay on a
    assert table.holder(0) is None and not table.restorable(CONV)
    assert a.misses._why[CONV] == "it moved to upstream b"
    b = keeper("b", recent)
    b.lost("the upstream answers again (restarted: its cache is empty)")
    assert b.to_json()["queued"] == [CONV]  # where it lives, it is warmed


def test_a_conversation_kept_on_two_upstreams_by_an_older_lmsd_lives_on_the_newer():
    recent = RecentRequests(None)
    for r in (request("a", 1.0), request("b", 2.0)):  # as load() reads them: oldest first
        recent._place(r)
    assert recent.where(CONV) == "b" and recent.get("a", CONV) is None
