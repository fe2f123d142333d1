"""A generic Responses client (the official openai SDK, ``store`` left at its default)
continues a conversation with ``previous_response_id`` and the new items only: lmsd
expands the id it returned to the whole history, then chains upstream on its own."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from tests.emulator import Call, Reply, Text
from tests.fronts.test_client_keys import DESKTOP, KEYS, LAPTOP, local, shared

EXEC = {"type": "function", "name": "exec_command", "description": "Run a command",
        "strict": False,
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}


def said(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(who, what) for each item the model was given: its text, call or call output."""
    out = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            content = item["content"]
            text = content if isinstance(content, str) else \
                "".join(p.get("text", "") for p in content)
            out.append((item["role"], text))
        elif kind == "function_call":
            out.append(("call", f"{item['name']} {item['arguments']}"))
        elif kind == "function_call_output":
            out.append(("output", item["output"]))
    return out


def openai_client(url: str, key: str = "x") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


@pytest.fixture
async def oai(lmsd) -> Any:
    async with openai_client(lmsd.url) as c:
        yield c


async def test_three_turns_by_previous_response_id_only(oai, emulator):
    emulator.script(Reply(Text("one")), Reply(Text("two")), Reply(Text("three")))
    first = await oai.responses.create(model="local-model", input="a",
                                       instructions="Be terse.")
    second = await oai.responses.create(model="local-model", input="b",
                                        instructions="Be terse.",
                                        previous_response_id=first.id)
    third = await oai.responses.create(model="local-model", input=[
        {"role": "user", "content": "c"}], instructions="Be terse.",
        previous_response_id=second.id)
    assert [first.output_text, second.output_text, third.output_text] == \
        ["one", "two", "three"]
    gens = emulator.generations
    # the model saw the whole conversation each turn ...
    assert said(gens[2].context_items) == [("user", "a"), ("assistant", "one"),
                                          ("user", "b"), ("assistant", "two"),
                                          ("user", "c")]
    assert gens[2].instructions_used == "Be terse."
    # ... and lmsd sent only the new item, chained on the upstream's own ids
    assert gens[1].body["previous_response_id"] == gens[0].response_id
    assert gens[2].body["previous_response_id"] == gens[1].response_id
    assert said(gens[2].body["input"]) == [("user", "c")]
    assert {first.id, second.id, third.id}.isdisjoint(g.response_id for g in gens)


async def test_streamed_answers_chain_too(oai, emulator):
    """The id is known before the client reads ``response.completed``."""
    emulator.script(Reply(Text("one")), Reply(Text("two")))
    async with oai.responses.stream(model="local-model", input="a") as stream:
        first = await stream.get_final_response()
    async with oai.responses.stream(model="local-model", input="b",
                                    previous_response_id=first.id) as stream:
        second = await stream.get_final_response()
    assert second.output_text == "two"
    assert said(emulator.generations[1].context_items) == [
        ("user", "a"), ("assistant", "one"), ("user", "b")]


async def test_instructions_are_not_carried_over(oai, emulator):
    """OpenAI's rule: a follow-up gets only the instructions it gives."""
    emulator.script(Reply(Text("one")), Reply(Text("two")))
    first = await oai.responses.create(model="local-model", input="a",
                                       instructions="Answer in French.")
    await oai.responses.create(model="local-model", input="b",
                               previous_response_id=first.id)
    second = emulator.generations[1]
    assert "instructions" not in second.body and second.instructions_used is None
    assert said(second.context_items) == [("user", "a"), ("assistant", "one"),
                                         ("user", "b")]


async def test_a_tool_call_round_trip(oai, emulator):
    emulator.script(Reply(Call("exec_command", {"cmd": "ls"})), Reply(Text("two files")))
    first = await oai.responses.create(model="local-model", input="list the files",
                                       tools=[EXEC])  # type: ignore[list-item]
    [call] = first.output
    assert call.type == "function_call" and call.name == "exec_command"
    second = await oai.responses.create(
        model="local-model", tools=[EXEC], previous_response_id=first.id,  # type: ignore
        input=[{"type": "function_call_output", "call_id": call.call_id,
                "output": "a.txt b.txt"}])
    assert second.output_text == "two files"
    gen = emulator.generations[1]
    assert gen.body["previous_response_id"] == emulator.generations[0].response_id
    assert gen.body["input"] == [{"type": "function_call_output", "call_id": call.call_id,
                                  "output": "a.txt b.txt"}]
    assert said(gen.context_items) == [("user", "list the files"),
                                       ("call", 'exec_command {"cmd":"ls"}'),
                                       ("output", "a.txt b.txt")]


async def test_on_a_chat_upstream_the_whole_history_is_sent(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, upstream_api="chat")
    emulator.script(Reply(Text("one")), Reply(Text("two")))
    async with openai_client(server.url) as oai:
        first = await oai.responses.create(model="local-model", input="a",
                                           instructions="Be terse.")
        await oai.responses.create(model="local-model", input="b", instructions="Be terse.",
                                   previous_response_id=first.id)
    [_, sent] = [r for r in emulator.log if r.path == "/v1/chat/completions"]
    assert [(m["role"], m["content"]) for m in sent.body["messages"]] == [
        ("system", "Be terse."), ("user", "a"), ("assistant", "one"), ("user", "b")]


async def test_an_unknown_id_is_openais_400(oai, emulator):
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.responses.create(model="local-model", input="b",
                                   previous_response_id="resp_nope")
    error = caught.value
    assert error.status_code == 400 and error.code == "previous_response_not_found"
    assert error.param == "previous_response_id"
    assert error.body["message"] == "Previous response with id 'resp_nope' not found."
    assert emulator.generations == []


async def test_a_store_false_answer_is_not_kept(oai, emulator):
    emulator.script(Reply(Text("one")), Reply(Text("kept")), Reply(Text("two")))
    unkept = await oai.responses.create(model="local-model", input="a", store=False)
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.responses.create(model="local-model", input="b",
                                   previous_response_id=unkept.id)
    assert caught.value.code == "previous_response_not_found"
    assert unkept.id in caught.value.body["message"]
    # a follow-up may itself be store: false and still expand a kept one
    kept = await oai.responses.create(model="local-model", input="a")
    await oai.responses.create(model="local-model", input="b", store=False,
                               previous_response_id=kept.id)
    assert said(emulator.generations[-1].context_items)[:2] == [("user", "a"),
                                                                ("assistant", "kept")]


async def test_retrieve_a_kept_response(oai, emulator, lmsd):
    emulator.script(Reply(Text("one")))
    first = await oai.responses.create(model="local-model", input="a")
    again = await oai.responses.retrieve(first.id)
    assert again.id == first.id and again.output_text == "one"
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.responses.retrieve("resp_nope")
    assert "resp_nope" in caught.value.body["message"]


async def test_an_id_expands_after_an_lmsd_restart(start_lmsd, emulator):
    first_lmsd = await start_lmsd(emulator.url)
    emulator.script(Reply(Text("one")), Reply(Text("two")))
    async with openai_client(first_lmsd.url) as oai:
        first = await oai.responses.create(model="local-model", input="a")
    first_lmsd.shutdown.set()  # a new lmsd on the same state dir
    second_lmsd = await start_lmsd(emulator.url, state_dir=first_lmsd.settings.state_dir)
    async with openai_client(second_lmsd.url) as oai:
        second = await oai.responses.create(model="local-model", input="b",
                                            previous_response_id=first.id)
    assert second.output_text == "two"
    gen = emulator.generations[1]
    assert said(gen.context_items) == [("user", "a"), ("assistant", "one"), ("user", "b")]
    assert gen.body["previous_response_id"] == emulator.generations[0].response_id


async def test_a_client_cannot_expand_another_clients_id(start_lmsd, emulator):
    server = await shared(start_lmsd, emulator, client_keys=KEYS)
    url = local(server.url)
    emulator.script(Reply(Text("laptop's secret")), Reply(Text("two")))
    async with openai_client(url, LAPTOP) as laptop, openai_client(url, DESKTOP) as desktop:
        first = await laptop.responses.create(model="local-model", input="a")
        with pytest.raises(openai.BadRequestError) as caught:
            await desktop.responses.create(model="local-model", input="b",
                                           previous_response_id=first.id)
        assert caught.value.code == "previous_response_not_found"
        with pytest.raises(openai.NotFoundError):
            await desktop.responses.retrieve(first.id)
        await laptop.responses.create(model="local-model", input="b",
                                      previous_response_id=first.id)
    assert len(emulator.generations) == 2
    assert "laptop's secret" in json.dumps(emulator.generations[1].context_items)


async def test_a_bad_previous_response_id_is_named(http):
    response = await http.post("/v1/responses", json={"model": "m", "input": "x",
                                                      "previous_response_id": 7})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "previous_response_id"


async def test_codex_store_false_full_resend_is_unchanged(http, emulator):
    """Codex (``store: false``, the whole history each turn) keeps nothing here."""
    emulator.script(Reply(Text("one")))
    response = await http.post("/v1/responses", json={
        "model": "m", "input": "a", "store": False}, headers={"session-id": "thread-1"})
    assert response.status_code == 200
    again = await http.get(f"/v1/responses/{response.json()['id']}")
    assert again.status_code == 404
    assert again.json()["error"]["type"] == "invalid_request_error"


async def test_the_follow_up_runs_in_the_session_it_follows(lmsd, emulator):
    emulator.script(Reply(Text("one")), Reply(Text("two")))
    async with httpx.AsyncClient(base_url=lmsd.url) as http:
        first = await http.post("/v1/responses", json={"model": "m", "input": "a"},
                                headers={"session-id": "app-7"})
        await http.post("/v1/responses", json={
            "model": "m", "input": "b", "previous_response_id": first.json()["id"]})
    turns = {key[0]: stats.turns for key, stats in lmsd.store.stats.items()}
    assert turns == {"app-7": 2}
