"""Stop sequences on text that arrives in pieces."""

from __future__ import annotations

from lmsd.protocol.stops import StopScanner


def test_a_sequence_cuts_the_text_before_it():
    assert StopScanner(("STOP",)).scan("abc STOP def") == ("abc ", "", "STOP")


def test_what_may_begin_a_sequence_is_held_back():
    scanner = StopScanner(("STOP", "END"))
    assert scanner.scan("abc ST") == ("abc ", "ST", None)
    assert scanner.scan("ST" + "ART") == ("START", "", None)
    assert scanner.scan("abc E") == ("abc ", "E", None)


def test_the_earliest_sequence_wins_and_ties_go_to_the_smallest():
    assert StopScanner(("b", "ab")).scan("xab") == ("x", "", "ab")
    assert StopScanner(("abc", "ab")).scan("xabc") == ("x", "", "ab")


def test_nothing_is_held_when_no_sequence_can_start():
    assert StopScanner(("STOP",)).scan("plain") == ("plain", "", None)
    assert StopScanner(("x",)).scan("abc") == ("abc", "", None)
