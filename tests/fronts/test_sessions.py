"""Chained sessions end to end: each case asserts what LM Studio (the emulator) received."""

from __future__ import annotations

import itertools
import json

import anthropic
import httpx
import pytest
import trio

from tests.emulator import Fault, Reply, Text
from tests.support.conversation import BASH, Conversation, tool_turns


async def test_every_turn_after_the_first_is_a_delta(client, emulator):
    emulator.script(*tool_turns(4), Reply(Text("all done")))
    chat = Conversation(client)
    await chat.send("start")
    for _ in range(4):
        await chat.send()
    gens = emulator.generations
    assert "previous_response_id" not in gens[0].body
    for before, after in itertools.pairwise(gens):
        assert after.body["previous_response_id"] == before.response_id
        assert [i["type"] for i in after.body["input"]] == ["function_call_output"]
        # instructions and tools are resent every time; LM Studio needs the tools
        assert after.body["instructions"] == "You are a local coding agent."
        assert [t["name"] for t in after.body["tools"]] == ["Bash"]
    # LM Studio's reconstructed context equals a full resend of the client's history
    assert semantic(emulator.generations[-1].context_items) == semantic(
        _full_items(chat.history[:-1]))  # the context the last answer was given


def _full_items(history):
    from tests.support.pivot import input_items

    return input_items(history)


def semantic(items):
    """What the model sees in a context, without LM Studio's own bookkeeping (item ids,
    status) and without its reasoning items, which a client's history cannot carry."""
    out = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            out.append((item["role"], [p.get("text", p.get("image_url"))
                                       for p in item["content"]]))
        elif kind == "function_call":
            out.append((kind, item["call_id"], item["name"], json.loads(item["arguments"])))
        elif kind == "function_call_output":
            out.append((kind, item["call_id"], item["output"]))
    return out


async def test_retry_after_a_dropped_stream_chains_onto_the_previous_node(client, emulator):
    emulator.script(*tool_turns(1), Reply(Text("answer that will be cut off")),
                    Reply(Text("answer")))
    chat = Conversation(client)
    await chat.send("start")
    first_id = emulator.generations[0].response_id
    emulator.inject(Fault.drop(after_events=8))
    chat.add_user()
    with pytest.raises(Exception):  # noqa: B017 - the SDK raises on the error event
        await chat.request()
    msg = await chat.request()  # Claude Code retries the same turn
    assert msg.content[0].text == "answer"
    failed, retried = emulator.generations[1:]
    assert failed.body["previous_response_id"] == first_id
    assert retried.body["previous_response_id"] == first_id  # not the failed response
    assert retried.body["input"] == failed.body["input"]


async def test_truncated_and_failed_answers_are_never_stored(client, emulator, lmsd):
    emulator.script(*tool_turns(1), Reply(Text("cut"), incomplete=True), Reply(Text("x")))
    chat = Conversation(client)
    await chat.send("start")
    msg = await chat.send()
    assert msg.stop_reason == "max_tokens"
    await chat.send("continue")  # the incomplete answer is not a node to chain onto
    last = emulator.generations[-1]
    assert last.body["previous_response_id"] == emulator.generations[0].response_id
    assert len(last.body["input"]) == 3  # tool result, the cut answer, the new prompt


async def test_rewind_forks_from_the_matching_node(client, emulator):
    emulator.script(*tool_turns(2), Reply(Text("end")), Reply(Text("forked")))
    chat = Conversation(client)
    await chat.send("start")
    await chat.send()
    await chat.send()
    ids = [g.response_id for g in emulator.generations]
    # the user rewinds to after turn 1 and answers differently
    rewound = [*chat.history[:2], {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": chat.history[1]["content"][-1]["id"],
         "content": "a different result"}]}]
    await chat.request(rewound)
    fork = emulator.generations[-1]
    assert fork.body["previous_response_id"] == ids[0]
    assert fork.body["input"][0]["output"] == "a different result"


async def test_compact_and_clear_start_a_new_chain(client, emulator):
    emulator.script(*tool_turns(1), Reply(Text("ok")), Reply(Text("summary")),
                    Reply(Text("fresh")))
    chat = Conversation(client)
    await chat.send("start")
    await chat.send()
    await chat.request([{"role": "user", "content": "This session is being continued..."}])
    assert "previous_response_id" not in emulator.generations[-1].body
    await chat.request([{"role": "user", "content": "a brand new conversation"}])
    assert "previous_response_id" not in emulator.generations[-1].body


async def test_side_requests_do_not_touch_the_main_chain(client, emulator):
    emulator.script(*tool_turns(1), Reply(Text("title")), Reply(Text("main")))
    chat = Conversation(client)
    await chat.send("start")
    title = Conversation(client, model="claude-haiku-4-5", tools=[])
    await title.send("<session>start</session> name this session")
    assert "previous_response_id" not in emulator.generations[-1].body
    await chat.send()
    assert emulator.generations[-1].body["previous_response_id"] == \
        emulator.generations[0].response_id


async def test_subagents_on_one_session_have_separate_chains(client, emulator):
    emulator.script(*tool_turns(1), *tool_turns(1), Reply(Text("main")), Reply(Text("sub")))
    main = Conversation(client, session="shared")
    sub = Conversation(client, session="shared", agent="agent-7")
    await main.send("main task")
    await sub.send("sub task")
    assert "previous_response_id" not in emulator.generations[1].body
    await main.send()
    await sub.send()
    gens = emulator.generations
    assert gens[2].body["previous_response_id"] == gens[0].response_id
    assert gens[3].body["previous_response_id"] == gens[1].response_id


async def test_concurrent_turns_on_one_key_fork_and_never_interleave(client, emulator):
    emulator.script(*tool_turns(1))
    chat = Conversation(client)
    await chat.send("start")
    emulator.script(Reply(Text("a")), Reply(Text("b")))
    chat.add_user()
    results = []

    async def one() -> None:
        results.append(await chat.request(list(chat.history)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        nursery.start_soon(one)
    assert sorted(m.content[0].text for m in results) == ["a", "b"]
    first = emulator.generations[0].response_id
    for g in emulator.generations[1:]:
        assert g.body["previous_response_id"] == first
        assert semantic(g.context_items) == semantic(_full_items(chat.history))


async def test_stale_chain_is_retried_in_full_without_an_error(client, emulator, lmsd):
    emulator.script(*tool_turns(2), Reply(Text("done")))
    chat = Conversation(client)
    await chat.send("start")
    emulator.wipe_history()  # LM Studio restarted and lost its stored responses
    msg = await chat.send()
    assert msg.content[-1].type == "tool_use"
    rejected, full = emulator.generations[1:]
    assert rejected.status == 400
    assert "previous_response_not_found" in json.dumps(rejected.error)
    assert "previous_response_id" not in full.body
    assert full.body["input"] == _full_items(chat.history[:-1])
    await chat.send()  # and the chain is rebuilt from the full resend
    assert emulator.generations[-1].body["previous_response_id"] == full.response_id


async def test_stale_chain_reported_as_a_stream_error_is_retried(client, emulator):
    emulator.script(*tool_turns(1))
    chat = Conversation(client)
    await chat.send("start")
    emulator.script(Reply(Text("used up by the failed attempt")), Reply(Text("recovered")))
    emulator.inject(Fault.error_event(after_events=0, code="previous_response_not_found",
                                      message="Previous response not found"))
    msg = await chat.send()
    assert msg.content[-1].text == "recovered"
    assert "previous_response_id" not in emulator.generations[-1].body


@pytest.mark.parametrize("mode", ["inherit", "replace"])
async def test_instructions_reach_the_model_in_both_upstream_modes(client, emulator, mode):
    emulator.instructions_mode = mode
    emulator.script(*tool_turns(1), Reply(Text("ok")))
    chat = Conversation(client)
    await chat.send("start")
    await chat.send()
    chained = emulator.generations[-1]
    assert chained.body["previous_response_id"]
    assert chained.instructions_used == "You are a local coding agent."


async def test_chaining_can_be_turned_off(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, chaining="false")
    emulator.script(*tool_turns(2))
    async with _client(server) as client:
        chat = Conversation(client)
        await chat.send("start")
        await chat.send()
    assert all("previous_response_id" not in g.body for g in emulator.generations)


async def test_session_id_from_metadata_and_path(client, emulator, lmsd):
    emulator.script(*tool_turns(1), Reply(Text("ok")))
    meta = json.dumps({"device_id": "d", "account_uuid": "", "session_id": "from-meta"})
    history = [{"role": "user", "content": "start"}]
    first = await client.messages.create(model="claude-x", max_tokens=10, tools=[BASH],
                                         messages=history, metadata={"user_id": meta})
    history += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                {"role": "user", "content": [{"type": "tool_result",
                                              "tool_use_id": first.content[-1].id,
                                              "content": "x"}]}]
    await client.messages.create(model="claude-x", max_tokens=10, tools=[BASH],
                                 messages=history, metadata={"user_id": meta})
    assert emulator.generations[1].body.get("previous_response_id")
    async with httpx.AsyncClient(base_url=lmsd.url) as http:
        emulator.script(*tool_turns(1))
        await http.post("/session/by-path/v1/messages", json={
            "model": "claude-x", "max_tokens": 10, "tools": [BASH],
            "messages": [{"role": "user", "content": "start"}]})
    assert emulator.generations[-1].body["model"] == "qwen/qwen3-coder-30b"


def _client(server):
    import anthropic

    return anthropic.AsyncAnthropic(base_url=server.url, api_key="x", max_retries=0)


async def test_restart_keeps_the_chain_and_session_config(start_lmsd, emulator):
    first = await start_lmsd(emulator.url)
    emulator.script(*tool_turns(2))
    async with httpx.AsyncClient(base_url=first.url) as http:
        await http.put("/session/sess-1/config", json={"allowedTools": ["Bash"]})
    async with _client(first) as client:
        chat = Conversation(client)
        await chat.send("start")
    first.shutdown.set()  # the daemon stops; a new one starts on the same state dir
    second = await start_lmsd(emulator.url, state_dir=first.settings.state_dir)
    async with _client(second) as client:
        chat.client = client
        await chat.send()
    assert emulator.generations[-1].body["previous_response_id"] == \
        emulator.generations[0].response_id
    async with httpx.AsyncClient(base_url=second.url) as http:
        config = (await http.get("/session/sess-1/config")).json()["config"]
    assert config == {"model": None, "allowedTools": ["Bash"]}


async def test_corrupt_store_is_moved_aside_and_the_daemon_serves(start_lmsd, emulator,
                                                                   tmp_path):
    state = tmp_path / "corrupt"
    state.mkdir()
    (state / "sessions.sqlite3").write_bytes(b"this is not a database" * 100)
    server = await start_lmsd(emulator.url, state_dir=str(state))
    emulator.script(*tool_turns(2))
    async with _client(server) as client:
        chat = Conversation(client)
        await chat.send("start")
        await chat.send()
    assert emulator.generations[-1].body.get("previous_response_id")
    assert [p.name for p in state.glob("sessions.sqlite3.corrupt-*")]


async def test_unusable_state_dir_leaves_sessions_in_memory(start_lmsd, emulator, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state dir should be")
    server = await start_lmsd(emulator.url, state_dir=str(blocker / "state"))
    emulator.script(*tool_turns(2))
    async with _client(server) as client:
        chat = Conversation(client)
        await chat.send("start")
        await chat.send()
    assert emulator.generations[-1].body.get("previous_response_id")


async def test_counters_per_session(client, emulator, lmsd):
    emulator.script(*tool_turns(3), Reply(Text("t")))
    chat = Conversation(client, session="counted")
    await chat.send("start")
    await chat.send()
    await chat.send()
    title = Conversation(client, session="counted", tools=[])
    await title.send("name it")
    stats = lmsd.store.stats[("counted", "main", "qwen/qwen3-coder-30b")]
    assert stats.turns == 4
    assert stats.chain_hits == 2
    assert stats.misses == {"no_node": 1, "context_changed": 1}
    assert stats.items_sent < stats.items_full
    assert stats.tokens_sent < stats.tokens_full
    assert stats.last_response_id == emulator.generations[-1].response_id


async def test_a_responses_server_without_chaining_switches_chaining_off(client, emulator,
                                                                         lmsd):
    """llama.cpp's /v1/responses refuses previous_response_id: lmsd resends the turn in
    full at once, says so once, and stops trying to chain on that upstream."""
    emulator.stateless = True
    emulator.script(*tool_turns(3))
    chat = Conversation(client)
    with lmsd.bus.subscribe(types=("upstream.chaining_unsupported",)) as sub:
        await chat.send("start")
        await chat.send()
        await chat.send()
        notice = await sub.next()
    assert notice["type"] == "upstream.chaining_unsupported"
    bodies = [g.body for g in emulator.generations]
    assert ["previous_response_id" in b for b in bodies] == [False, True, False, False]
    assert emulator.generations[1].status == 400
    async with httpx.AsyncClient(base_url=lmsd.admin_url) as http:
        assert (await http.get("/status")).json()["upstream"]["chaining"] is False


@pytest.mark.parametrize("stream", [False, True])
async def test_llama_servers_responses_completed_at_the_output_limit_is_max_tokens(
        start_lmsd, emulator, stream):
    """llama.cpp's /v1/responses says ``completed`` when it stopped at
    ``max_output_tokens``: its usage shows the limit reached, and Claude Code is told."""
    emulator.lmstudio_api, emulator.llama_server, emulator.stateless = False, True, True
    emulator.script(Reply(Text("cut off"), incomplete=True))
    server = await start_lmsd(emulator.url, upstream_api="responses",
                              model="qwen/qwen3-coder-30b")
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="x",
                                        max_retries=0) as client:
        request = {"model": "claude-x", "max_tokens": 5,
                   "messages": [{"role": "user", "content": "go"}]}
        if stream:
            async with client.messages.stream(**request) as answer:
                msg = await answer.get_final_message()
        else:
            msg = await client.messages.create(**request)
    assert emulator.generations[0].status == 200
    assert msg.content[0].text == "cut off"
    assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 5


async def test_a_context_overflow_on_a_chained_turn_is_not_a_stale_chain(client, emulator,
                                                                        lmsd):
    """The prompt is at fault, not the chain: no full resend that would overflow too, and
    the node stays (Claude Code compacts and goes on from it)."""
    emulator.script(*tool_turns(2))
    chat = Conversation(client)
    await chat.send("start")
    nodes = lmsd.store.node_count()
    emulator.models["qwen/qwen3-coder-30b"].context_length = 60
    with pytest.raises(anthropic.APIStatusError) as info:  # an SSE error event
        await chat.send()
    assert info.value.body["error"]["message"].startswith("prompt is too long: ")
    assert [g.status for g in emulator.generations] == [200, 400]  # one attempt only
    assert lmsd.store.node_count() == nodes
