"""The event bus: slow subscribers, replay."""

from __future__ import annotations

from lmsd.bus import EventBus


async def test_a_slow_subscriber_is_told_what_it_missed():
    bus = EventBus(queue_size=4)
    with bus.subscribe() as sub:
        for n in range(10):
            bus.publish({"type": "x", "n": n})  # never blocks the publisher
        got = [await sub.next() for _ in range(5)]
    assert got[0]["type"] == "dropped" and got[0]["count"] == 6
    assert [g["n"] for g in got[1:]] == [0, 1, 2, 3]


async def test_replay_delivers_recent_matching_events():
    bus = EventBus()
    for n in range(5):
        bus.publish({"type": "model.loaded" if n % 2 else "request.end", "n": n})
    with bus.subscribe(types=("model",), replay=10) as sub:
        assert [(await sub.next())["n"] for _ in range(2)] == [1, 3]
