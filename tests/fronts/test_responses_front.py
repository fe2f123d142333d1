"""End to end: the official openai SDK (and Codex-shaped raw requests) -> lmsd's
``POST /v1/responses`` -> the LM Studio emulator."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI

from tests.emulator import Call, Fault, Reasoning, Reply, Text
from tests.emulator.overflow import MODES, WORDINGS
from tests.support.anthropic_checks import parse_sse
from tests.support.fixtures import codex_request
from tests.support.overflow_cases import sample, values

MODEL = "qwen/qwen3-coder-30b"  # the emulator's loaded model
CONTEXT = 400
EXEC = {"type": "function", "name": "exec_command", "description": "Run a command",
        "strict": False,
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}
NAMESPACE = {"type": "namespace", "name": "multi_agent_v1", "description": "agents",
             "tools": [{"type": "function", "name": "close_agent", "description": "close",
                        "parameters": {"type": "object", "properties": {}}}]}
PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}}
DEV = {"type": "message", "id": "msg_dev", "role": "developer",
       "content": [{"type": "input_text", "text": "You are Codex."}]}


def user(text: str, item_id: str = "msg_u") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "role": "user",
            "content": [{"type": "input_text", "text": text}]}


def codex_body(items: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
               **extra: Any) -> dict[str, Any]:
    return {"model": "some-local-model", "stream": True, "input": items,
            "tools": tools if tools is not None else [EXEC, NAMESPACE,
                                                      {"type": "web_search"}],
            "tool_choice": "auto", "parallel_tool_calls": True,
            "reasoning": {"summary": "auto"}, "store": False,
            "include": ["reasoning.encrypted_content"], "prompt_cache_key": "thread-1",
            **extra}


def echo(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Codex's echo of an answer's output items: kept whole (ids, status), reasoning with
    ``encrypted_content: null`` (``codex-traffic/0.171/reasoning-content``)."""
    items = []
    for item in output:
        item = dict(item)
        if item["type"] == "reasoning":
            item["encrypted_content"] = None
        items.append(item)
    return items


def completed(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert events[-1]["type"] == "response.completed", events[-1]
    return events[-1]["response"]


async def post(http: httpx.AsyncClient, body: dict[str, Any], **headers: str
               ) -> httpx.Response:
    return await http.post("/v1/responses", json=body,
                           headers={"session-id": "thread-1", **headers})


async def stream_events(http: httpx.AsyncClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await post(http, body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.content)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


@pytest.fixture
async def oai(lmsd) -> Any:
    async with AsyncOpenAI(base_url=f"{lmsd.url}/v1", api_key="x", max_retries=0) as c:
        yield c


async def test_streamed_text_through_the_sdk(oai, emulator):
    emulator.script(Reply(Text("Hello from the local model.")))
    async with oai.responses.stream(model="some-local-model", input="hi") as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == "Hello from the local model."
    assert final.output_text == "Hello from the local model."
    assert final.status == "completed"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    assert final.usage.total_tokens == final.usage.input_tokens + final.usage.output_tokens
    [record] = emulator.generations
    assert record.body["model"] == MODEL  # an unknown model: the loaded one serves it
    assert record.body["store"] is True


async def test_non_streamed_response_object(oai, emulator):
    emulator.script(Reply(Reasoning("plan"), Text("answer"), Call("exec_command",
                                                                   {"cmd": "ls"})))
    response = await oai.responses.create(model="some-local-model", input="go",
                                          tools=[EXEC])  # type: ignore[list-item]
    assert [o.type for o in response.output] == ["reasoning", "message", "function_call"]
    assert response.output[0].content[0].text == "plan"
    assert response.output[2].arguments == '{"cmd":"ls"}'


async def test_oss_probe_empty_input(http, emulator):
    emulator.script(Reply(Text("x")))
    response = await http.post("/v1/responses", json={"model": "some-local-model",
                                                      "input": "", "max_output_tokens": 1})
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "response"


async def test_tool_loop_namespace_and_chaining(http, emulator):
    """Codex's default tools (namespace + web_search) work; its full resend chains."""
    emulator.script(Reply(Reasoning("think"), Call("multi_agent_v1__close_agent", {})),
                    Reply(Text("closed")))
    first = [DEV, user("close it")]
    events = await stream_events(http, codex_body(first))
    out = completed(events)["output"]
    call = out[1]
    assert call["type"] == "function_call" and call["name"] == "close_agent"
    assert call["namespace"] == "multi_agent_v1"
    done = [e["item"]["type"] for e in events if e["type"] == "response.output_item.done"]
    assert done == ["reasoning", "function_call"]
    gen1 = emulator.generations[0]
    assert [t["name"] for t in gen1.body["tools"]] == ["exec_command",
                                                       "multi_agent_v1__close_agent"]
    assert gen1.body["instructions"] == "You are Codex."
    assert "id" not in json.dumps(gen1.body["input"]).replace('"call_id"', "")
    output = {"type": "function_call_output", "id": "fco_1", "call_id": call["call_id"],
              "output": "closed it"}
    events = await stream_events(http, codex_body([*first, *echo(out), output]))
    assert completed(events)["output"][0]["content"][0]["text"] == "closed"
    gen2 = emulator.generations[1]
    assert gen2.body["previous_response_id"] == gen1.response_id
    assert gen2.body["input"] == [{"type": "function_call_output",
                                   "call_id": call["call_id"], "output": "closed it"}]


async def test_custom_tool_round_trip(http, emulator):
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n"
    emulator.script(Reply(Call("apply_patch", {"input": patch})), Reply(Text("done")))
    first = [DEV, user("patch")]
    events = await stream_events(http, codex_body(first, [EXEC, PATCH]))
    [call] = completed(events)["output"]
    assert call["type"] == "custom_tool_call" and call["input"] == patch
    tool = emulator.generations[0].body["tools"][1]
    assert tool["parameters"]["required"] == ["input"] and "start: x" in tool["description"]
    output = {"type": "custom_tool_call_output", "id": "ctco_1", "call_id": call["call_id"],
              "output": "Success"}
    await stream_events(http, codex_body([*first, *echo([call]), output], [EXEC, PATCH]))
    assert emulator.generations[1].body["previous_response_id"] == \
        emulator.generations[0].response_id


async def test_captured_codex_request_is_accepted(http, emulator):
    """A real Codex 0.171 request (default tools, echoed reasoning) reaches LM Studio
    with only function tools and no ids."""
    emulator.script(Reply(Text("done")))
    captured = codex_request("reasoning-content", 2)
    headers = {k: v for k, v in captured["headers"] if k.lower() in
               ("session-id", "x-codex-turn-metadata")}
    response = await http.post("/v1/responses", json=captured["body"], headers=headers)
    assert response.status_code == 200, response.text
    body = emulator.generations[0].body
    assert {t["type"] for t in body["tools"]} == {"function"}
    assert all(i["type"] != "reasoning" for i in body["input"])


async def test_bad_input_is_an_openai_400(http):
    response = await post(http, codex_body([user("x")], [{"type": "function", "name": 3}]))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "tools[0].name" in error["message"]


async def test_mid_stream_failure_is_response_failed(http, emulator):
    emulator.inject(Fault.failed("boom"))
    events = await stream_events(http, codex_body([user("x")]))
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "server_error"
    assert not any(e["type"] == "error" for e in events)


async def test_incomplete(http, emulator):
    emulator.script(Reply(Text("cut"), incomplete=True))
    events = await stream_events(http, codex_body([user("x")]))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def words(n: int) -> str:
    return " ".join(["abc"] * n)


#: Every wording and every transport once (all of them in all: pure logic,
#: tests/protocol/test_overflow_matrix.py).
OVERFLOWS = sample(("lmstudio", "http400"), ("lmstudio_n_keep", "stream_error"),
                   ("lmstudio_0425", "http500"), ("llama_server", "response_failed"),
                   ("openai", "stream_error"), ("vllm", "response_failed"))


def test_the_sample_covers_every_wording_and_transport():
    assert {w for w, _ in values(OVERFLOWS)} == set(WORDINGS)
    assert {m for _, m in values(OVERFLOWS)} == set(MODES)


@pytest.mark.parametrize(("wording", "mode"), OVERFLOWS)
async def test_overflow(start_lmsd, emulator, wording, mode):
    emulator.overflow_wording, emulator.overflow_mode = wording, mode  # type: ignore[assignment]
    emulator.models[MODEL].context_length = CONTEXT
    server = await start_lmsd(emulator.url)
    body = codex_body([user(words(CONTEXT + 20))], [EXEC])
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        plain = await post(http, {**body, "stream": False})
        streamed = await post(http, body)
    assert plain.status_code == 400, plain.text
    assert plain.json()["error"]["code"] == "context_length_exceeded"
    events = parse_sse(streamed.content)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "context_length_exceeded"


async def test_far_over_the_context_is_a_400_before_sending(start_lmsd, emulator):
    emulator.models[MODEL].context_length = CONTEXT
    server = await start_lmsd(emulator.url)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await post(http, codex_body([user(words(CONTEXT * 3))], [EXEC]))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"
    assert emulator.generations == []


async def test_overflows_are_counted_under_this_front(start_lmsd, emulator):
    emulator.models[MODEL].context_length = CONTEXT
    server = await start_lmsd(emulator.url)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        await post(http, codex_body([user(words(CONTEXT * 3))], [EXEC]))  # refused
        await post(http, {**codex_body([user(words(CONTEXT + 20))], [EXEC]),
                          "stream": False})  # the engine's
    async with httpx.AsyncClient(base_url=server.admin_url) as admin:
        text = (await admin.get("/metrics")).text
    for where in ("before_sending", "engine"):
        assert f'lmsd_context_overflows_total{{front="openai_responses",where="{where}"}} ' \
            '1.0' in text, where


async def test_compaction_keeps_the_prefix_and_chains(http, emulator):
    """Codex's compaction request (``tools: []``) is sent with the thread's tools and
    ``tool_choice: "none"``, chained; a call in its answer is dropped."""
    emulator.script(Reply(Text("first")), Reply(Text("summary"), Call("exec_command", {})))
    first = [DEV, user("go")]
    events = await stream_events(http, codex_body(first))
    out = completed(events)["output"]
    compact = user("You are performing a CONTEXT CHECKPOINT COMPACTION.", "")
    del compact["id"]
    meta = json.dumps({"request_kind": "compaction"})
    response = await post(http, codex_body([*first, *echo(out), compact], []),
                          **{"x-codex-turn-metadata": meta})
    events = parse_sse(response.content)
    assert [i["type"] for i in completed(events)["output"]] == ["message"]
    gen1, gen2 = emulator.generations
    assert gen2.body["previous_response_id"] == gen1.response_id
    assert gen2.body["tools"] == gen1.body["tools"]
    assert gen2.body["tool_choice"] == "none"
    assert len(gen2.body["input"]) == 1
