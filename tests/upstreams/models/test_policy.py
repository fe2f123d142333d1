"""The pool's decisions as pure logic: groups take turns, the budget evicts the least
recently used (never pinned, never in use), the idle ttl."""

from __future__ import annotations

from lmsd.upstreams.models.policy import Resident, Room, idle, make_room

GiB = 1024**3


def test_without_budget_or_group_nothing_leaves():
    loaded = [Resident("a", 10 * GiB), Resident("b", 10 * GiB)]
    assert make_room("c", 50 * GiB, "", loaded, 0) == Room()


def test_a_group_takes_turns_and_other_groups_stay():
    loaded = [Resident("coder-a", 10 * GiB, "main"), Resident("small", GiB, "side")]
    room = make_room("coder-b", 10 * GiB, "main", loaded, 0)
    assert [x.name for x in room.unload] == ["coder-a"] and room.clear
    assert room.unload[0].cause == "group" and "group 'main'" in room.unload[0].why


def test_a_pinned_model_holds_its_group():
    loaded = [Resident("coder-a", 10 * GiB, "main", pinned=True)]
    room = make_room("coder-b", 10 * GiB, "main", loaded, 0)
    assert room.refused and "coder-a is pinned in group 'main'" in room.refused


def test_past_the_budget_the_least_recently_used_leaves_first():
    loaded = [Resident("old", 8 * GiB, last_used=10), Resident("new", 8 * GiB, last_used=20),
              Resident("mid", 8 * GiB, last_used=15)]
    room = make_room("x", 8 * GiB, "", loaded, 24 * GiB)
    assert [x.name for x in room.unload] == ["old"]
    assert room.unload[0].cause == "budget"
    assert "budget: x needs 8.0 GiB, 24.0 GiB of 24.0 GiB in use" in room.unload[0].why
    room = make_room("x", 16 * GiB, "", loaded, 24 * GiB)
    assert [x.name for x in room.unload] == ["old", "mid"]


def test_pinned_and_in_use_models_do_not_leave():
    loaded = [Resident("pinned", 8 * GiB, last_used=1, pinned=True),
              Resident("busy", 8 * GiB, last_used=2, in_flight=1),
              Resident("idle", 8 * GiB, last_used=3)]
    room = make_room("x", 8 * GiB, "", loaded, 24 * GiB)
    assert [x.name for x in room.unload] == ["idle"] and room.clear
    room = make_room("x", 16 * GiB, "", loaded, 24 * GiB)
    assert room.wait_for == ("busy",) and not room.clear, "it waits for the request to end"


def test_a_model_that_can_never_fit_is_refused_with_the_reason():
    assert "more than the whole budget of 8.0 GiB" in \
        make_room("huge", 9 * GiB, "", [], 8 * GiB).refused
    loaded = [Resident("pinned", 6 * GiB, pinned=True)]
    refused = make_room("x", 4 * GiB, "", loaded, 8 * GiB).refused
    assert refused and "pinned models take 6.0 GiB" in refused


def test_unknown_memory_counts_as_nothing_and_is_never_the_one_to_go():
    loaded = [Resident("unknown", 0, last_used=1), Resident("known", 4 * GiB, last_used=2)]
    room = make_room("x", 6 * GiB, "", loaded, 8 * GiB)
    assert [x.name for x in room.unload] == ["known"]


def test_the_model_itself_is_not_in_its_own_way():
    loaded = [Resident("x", 8 * GiB, "main")]
    assert make_room("x", 8 * GiB, "main", loaded, 8 * GiB) == Room()


def test_idle_models_lmsd_loaded_leave_after_their_ttl():
    loaded = [Resident("due", by_lmsd=True, ttl=60, last_used=0),
              Resident("fresh", by_lmsd=True, ttl=60, last_used=50),
              Resident("users", by_lmsd=False, ttl=60, last_used=0),
              Resident("pinned", by_lmsd=True, ttl=60, pinned=True),
              Resident("busy", by_lmsd=True, ttl=60, in_flight=1),
              Resident("forever", by_lmsd=True, ttl=0),
              Resident("older", by_lmsd=True, ttl=30, last_used=-10)]
    assert [r.name for r in idle(loaded, now=100)] == ["older", "due"]
