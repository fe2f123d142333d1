"""The circuit breaker, fed times."""

from __future__ import annotations

from lmsd.upstreams.breaker import CLOSED, HALF_OPEN, OPEN, Breaker


def test_consecutive_failures_open_it_and_a_success_resets_the_count():
    breaker = Breaker(failures=3, cooldown=10)
    breaker.failure(0, "timeout")
    breaker.failure(1, "timeout")
    breaker.success()
    breaker.failure(2, "timeout")
    breaker.failure(3, "timeout")
    assert breaker.state == CLOSED
    assert breaker.failure(4, "timeout") == OPEN
    assert not breaker.available(5) and breaker.to_json(5)["probe_in_s"] == 9.0


def test_a_refused_connection_opens_it_at_once():
    breaker = Breaker(failures=3)
    assert breaker.failure(0, "refused", certain=True) == OPEN


def test_after_the_cooldown_one_probe_goes_through():
    breaker = Breaker(failures=1, cooldown=10)
    breaker.failure(0, "down")
    assert not breaker.claim(9.9)
    assert breaker.claim(10) and breaker.state == HALF_OPEN
    assert not breaker.claim(10.1)  # only one probe at a time
    assert breaker.success() == CLOSED and breaker.claim(10.2)


def test_a_failed_probe_doubles_the_wait_up_to_the_cap():
    breaker = Breaker(failures=1, cooldown=10, max_cooldown=30)
    breaker.failure(0, "down")
    waits = []
    now = 0.0
    for _ in range(4):
        now += breaker.wait
        assert breaker.claim(now)
        breaker.failure(now, "still down")
        waits.append(breaker.wait)
    assert waits == [20, 30, 30, 30]
    assert breaker.trips == 5


def test_an_active_check_failing_while_open_restarts_the_wait():
    breaker = Breaker(failures=1, cooldown=10)
    breaker.failure(0, "down")
    breaker.failure(8, "poll failed")
    assert not breaker.available(12) and breaker.available(18)


def test_an_active_check_success_brings_it_back_at_once():
    breaker = Breaker(failures=1, cooldown=10)
    breaker.failure(0, "down")
    assert breaker.success() == CLOSED and breaker.available(1)
    assert breaker.success() is None  # already closed: nothing to announce
