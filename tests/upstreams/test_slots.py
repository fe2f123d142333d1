"""The slot table (pure): which slot a conversation takes, and what is saved and restored
around it; and the warm-up body a replay sends."""

from __future__ import annotations

from lmsd.protocol.warmup import shared_start, warmup_body
from lmsd.upstreams.cache.slots import BACKGROUND, SlotSetup, SlotTable

ONE_SAVING = SlotSetup(slots=1, can_save=True)
TWO_KEEPING = SlotSetup(slots=2, keeps_idle=True, can_save=True)


def run(table: SlotTable, key: str, now: float):
    step = table.take(key, now)
    table.done(key, step.slot, now)
    return step


def test_one_slot_saves_the_holder_before_another_takes_it_and_restores_it_after():
    table = SlotTable(ONE_SAVING)
    first = run(table, "a/main", 1)
    assert (first.slot, first.save, first.restore) == (0, None, None)
    other = run(table, "b/main", 2)
    assert (other.slot, other.saved_key, other.restore) == (0, "a/main", None)
    back = run(table, "a/main", 3)
    assert back.saved_key == "b/main" and back.restore == other.save
    again = run(table, "a/main", 4)  # it holds the slot: nothing to do
    assert (again.save, again.restore, again.taken) == (None, None, False)


def test_side_requests_are_never_saved_and_go_first():
    table = SlotTable(TWO_KEEPING)
    run(table, "a/main", 1)
    run(table, BACKGROUND, 2)  # a title: the free slot
    assert table.holder(1) == BACKGROUND
    step = run(table, "b/main", 3)  # the side slot goes, not A's (older, but a session)
    assert step.slot == 1 and step.save is None and step.replaced == BACKGROUND
    assert table.holder(0) == "a/main"


def test_the_least_recently_used_conversation_gives_way_when_all_slots_hold_sessions():
    table = SlotTable(TWO_KEEPING)
    run(table, "a/main", 1)
    run(table, "b/main", 2)
    step = run(table, "c/main", 3)
    assert (step.slot, step.saved_key) == (0, "a/main")


def test_no_pins_where_idle_slots_are_cleared_or_unknown():
    for keeps in (False, None):
        table = SlotTable(SlotSetup(slots=4, keeps_idle=keeps))
        assert table.take("a/main", 1).slot is None
    assert SlotTable(SlotSetup(slots=1)).take("a/main", 1).slot == 0  # one slot: id 0


def test_without_slot_files_nothing_is_saved_or_restored():
    table = SlotTable(SlotSetup(slots=1, can_save=False))
    run(table, "a/main", 1)
    step = run(table, "b/main", 2)
    assert step.save is None and step.restore is None
    assert table.to_save(100, idle=5) == []


def test_idle_slots_are_saved_once_and_only_after_the_idle_time():
    table = SlotTable(ONE_SAVING)
    run(table, "a/main", 10)
    assert table.to_save(12, idle=5) == []
    ((slot, key),) = table.to_save(16, idle=5)
    assert (slot, key) == (0, "a/main")
    table.file_for(key)
    table.saved(slot, key)
    assert table.to_save(30, idle=5) == []
    assert table.restorable("a/main")


def test_a_restart_empties_the_slots_most_recent_first_and_files_stay():
    table = SlotTable(TWO_KEEPING)
    run(table, "a/main", 1)
    run(table, "b/main", 2)
    for slot, key in table.to_save(10, idle=1):
        table.file_for(key)
        table.saved(slot, key)
    assert table.lost() == ["b/main", "a/main"]
    assert table.holder(0) is None and table.holder(1) is None
    step = table.take("a/main", 11)
    assert step.restore is not None and step.save is None


def test_files_are_bounded_and_reused():
    table = SlotTable(ONE_SAVING, max_files=2)
    for n, key in enumerate(["a/main", "b/main", "c/main", "d/main"]):
        run(table, key, n)
    files = table.files()
    assert len(files) == 2 and set(files.values()) <= {"lmsd-0.bin", "lmsd-1.bin"}
    assert "a/main" not in files  # the oldest file was reused


def test_place_is_where_an_earlier_lmsd_left_a_conversation():
    table = SlotTable(TWO_KEEPING)
    table.place("b/main", 1)
    assert table.take("b/main", 1).slot == 1
    assert table.take("a/main", 2).slot == 0


def test_a_warmup_is_the_last_body_for_one_token_not_streamed():
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "stream_options": {"include_usage": True}, "max_tokens": 4096}
    assert warmup_body("/v1/chat/completions", chat) == {
        "model": "m", "messages": chat["messages"], "max_tokens": 1, "stream": False}
    responses = {"model": "m", "input": [], "stream": True, "previous_response_id": "r1",
                 "max_output_tokens": 8000}
    assert warmup_body("/v1/responses", responses) == {
        "model": "m", "input": [], "max_output_tokens": 16, "store": False, "stream": False}


def test_a_new_conversation_starts_from_a_similar_ones_file():
    table = SlotTable(TWO_KEEPING)
    run(table, "a/main", 1)
    a_file = table.file_for("a/main")
    table.saved(0, "a/main")
    step = table.enter("b/main", table.choose("b/main"), 2, seed=a_file)
    assert (step.slot, step.restore, step.seeded) == (1, a_file, True)
    assert table.unsaved(1)  # it holds A's prompt, not a file of B's
    assert table.files() == {"a/main": a_file}  # B has no file yet


def test_no_seed_without_slot_files_or_for_a_conversation_with_its_own():
    no_files = SlotTable(SlotSetup(slots=2, keeps_idle=True))
    assert no_files.enter("b/main", 1, 1, seed="lmsd-0.bin").restore is None
    table = SlotTable(ONE_SAVING)
    run(table, "a/main", 1)
    run(table, "b/main", 2)  # A saved
    run(table, "a/main", 3)  # B saved, A restored
    step = table.enter("b/main", 0, 4, seed=table.files()["a/main"])
    assert step.restore == table.files()["b/main"] and not step.seeded


def test_shared_start_counts_the_system_prompt_and_tools_in_common():
    tools = [{"type": "function", "function": {"name": "Bash"}}]
    one = {"messages": [{"role": "system", "content": "You code. cwd=/a"}], "tools": tools}
    two = {"messages": [{"role": "system", "content": "You code. cwd=/b"}], "tools": tools}
    other = {"messages": [{"role": "system", "content": "You code."}], "tools": []}
    assert shared_start(one, two) > shared_start(one, other) > 0
