"""Placement, fed values: pinned where the cache is, spread by load, moved only when it
must."""

from __future__ import annotations

from lmsd.upstreams.placement import Candidate, Placement

A, B = Candidate("a"), Candidate("b")


def test_new_conversations_spread_even_when_they_come_one_after_another():
    placement = Placement()
    chosen = [placement.choose((f"s{i}", "main"), [A, B], now=float(i)).upstream
              for i in range(6)]
    assert chosen == ["a", "b", "a", "b", "a", "b"]


def test_a_pinned_conversation_stays_whatever_the_load():
    placement = Placement()
    assert placement.choose(("s", "main"), [A, B], 0).upstream == "a"
    for n in range(5):
        placement.choose((f"other{n}", "main"), [A, B], 1)
    busy_a = Candidate("a", in_flight=7)
    choice = placement.choose(("s", "main"), [busy_a, B], 2)
    assert (choice.upstream, choice.why, choice.moved_from) == ("a", "pinned", None)


def test_weight_scales_the_share_of_conversations():
    placement = Placement()
    heavy = Candidate("big", weight=3)
    chosen = [placement.choose((f"s{i}", "main"), [heavy, B], 0).upstream for i in range(8)]
    assert chosen.count("big") == 6 and chosen.count("b") == 2


def test_in_flight_requests_count_as_load():
    placement = Placement()
    assert placement.choose(("s", "main"), [Candidate("a", in_flight=2), B], 0).upstream == "b"


def test_idle_conversations_stop_counting_after_the_active_window():
    placement = Placement(active_window=60)
    placement.choose(("old", "main"), [A, B], 0)
    assert placement.choose(("new", "main"), [A, B], 100).upstream == "a"  # old is idle


def test_spill_past_max_concurrent_and_the_spill_threshold():
    placement = Placement(spill_in_flight=3)
    placement.choose(("s", "main"), [A, B], 0)
    choice = placement.choose(("s", "main"), [Candidate("a", in_flight=3), B], 1)
    assert (choice.upstream, choice.why, choice.moved_from) == (
        "b", "moved: a is overloaded", "a")
    placement = Placement()
    placement.choose(("s", "main"), [A, B], 0)
    full = Candidate("a", in_flight=1, max_concurrent=1)
    assert placement.choose(("s", "main"), [full, B], 1).upstream == "b"


def test_when_everything_is_busy_the_least_loaded_still_takes_it():
    placement = Placement()
    choice = placement.choose(("s", "main"), [Candidate("a", in_flight=4, max_concurrent=1),
                                             Candidate("b", in_flight=2, max_concurrent=1)], 0)
    assert choice.upstream == "b"


def test_an_unavailable_or_failed_upstream_moves_the_conversation():
    placement = Placement()
    placement.choose(("s", "main"), [A, B], 0)
    down = Candidate("a", available=False)
    assert placement.choose(("s", "main"), [down, B], 1).why == "moved: a is out of rotation"
    placement.choose(("t", "main"), [A, B], 2)
    assert placement.pinned(("t", "main")) == "a"
    assert placement.choose(("t", "main"), [A, B], 3, exclude=["a"]).why == "moved: a failed"
    assert placement.choose(("u", "main"), [down], 4) is None


def test_the_upstream_holding_the_chain_wins_for_an_unpinned_conversation():
    placement = Placement()
    placement.choose(("x", "main"), [A, B], 0)  # a is busier
    choice = placement.choose(("s", "main"), [A, B], 1, holder="a")
    assert (choice.upstream, choice.why) == ("a", "holds_chain")


def test_a_background_route_does_not_move_the_pin():
    placement = Placement()
    placement.choose(("s", "main"), [A, B], 0)
    assert placement.choose(("s", "main"), [A, B], 1, prefer="b").why == "background"
    assert placement.pinned(("s", "main")) == "a"


def test_pins_are_bounded_and_forgotten_on_reset():
    placement = Placement(max_pins=2)
    for n in range(3):
        placement.choose((f"s{n}", "main"), [A, B], n)
    assert placement.pinned(("s0", "main")) is None
    assert placement.forget("s2") == 1 and placement.pinned(("s2", "main")) is None


def test_round_robin_ignores_conversations():
    placement = Placement(round_robin=True)
    chosen = [placement.choose(("same", "main"), [A, B], n).upstream for n in range(4)]
    assert chosen == ["b", "a", "b", "a"] and placement.pinned(("same", "main")) is None
