"""The emulator's /v1/responses answers: the whole response object, or its SSE stream,
each honouring the scripted faults and the configured overflow; and the JSON and error
answers every route uses (routes: app.py)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import trio
from quart import Response

from .chat import llama_timings
from .events import DELTA_EVENTS, Event, build_output, new_response_id, response_object, sse
from .overflow import failed_error, overflow_event
from .script import DropConnection, Fault
from .state import Emulator, Plan, RequestRecord
from .validate import ApiError


def error_response(record: RequestRecord, error: ApiError) -> Response:
    body = error.body()
    record.error = {**body.get("error", body), "detail": error.detail}
    if record.outcome is None:
        record.outcome = "rejected" if error.status < 500 else "error"
    return Response(json.dumps(error.body()), status=error.status, content_type="application/json")


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, content_type="application/json")


def _generate(emu: Emulator, plan: Plan, created_at: int) -> tuple[dict[str, Any], list[Event]]:
    """Pick the reply; build the final response object and the per-item stream events."""
    record = plan.record
    reply = emu.next_reply(record)
    output, item_events = build_output(reply, emu.chunk_size)
    usage = emu.usage(plan, output)
    status = "incomplete" if reply.incomplete else "completed"
    if reply.incomplete and emu.llama_server:  # it says "completed" at the output limit
        status = "completed"
        usage["output_tokens"] = plan.body.get("max_output_tokens") or usage["output_tokens"]
    assert record.response_id is not None
    final = response_object(
        plan, record.response_id, created_at, status=status, output=output, usage=usage
    )
    if emu.llama_server:  # its response objects have no incomplete_details
        del final["incomplete_details"]
    return final, item_events


async def plain_body(emu: Emulator, plan: Plan, fault: Fault | None) -> Response:
    """Non-streaming answer: the response object as JSON (or a fault's rendition of it)."""
    record = plan.record
    record.response_id = new_response_id()
    now = int(time.time())
    if fault is not None and fault.kind == "failed":
        error = {"code": fault.code, "message": fault.message}
        record.outcome = "failed"
        return json_response(
            response_object(plan, record.response_id, now, status="failed", error=error)
        )
    await trio.sleep(emu.prefill_seconds_per_token * plan.uncached)
    final, _ = _generate(emu, plan, now)
    if fault is not None and fault.kind == "error_event":
        return error_response(record, ApiError(fault.message, status=500, code=fault.code))
    data = json.dumps(final).encode()
    if fault is not None and fault.kind == "drop":

        async def truncated() -> AsyncIterator[bytes]:
            yield data[: len(data) // 2]
            raise DropConnection

        response = Response(truncated(), content_type="application/json")
        response.headers["Content-Length"] = str(len(data))
        return response
    emu.store(plan, final)
    record.outcome = final["status"]
    return Response(data, content_type="application/json")


async def stream_body(emu: Emulator, plan: Plan, fault: Fault | None) -> AsyncIterator[bytes]:
    """The SSE stream for one request, honouring stream-level faults and delays."""
    record = plan.record
    await trio.sleep(emu.prefill_seconds_per_token * plan.uncached)
    record.response_id = new_response_id()
    created_at = int(time.time())
    skeleton = response_object(plan, record.response_id, created_at, status="in_progress")
    created = {"type": "response.created", "response": skeleton}
    in_progress = {"type": "response.in_progress", "response": skeleton}
    final: dict[str, Any] | None = None
    if plan.overflow is not None and emu.overflow_mode == "response_failed":
        error = plan.overflow
        record.error = {"message": error.message, "detail": error.detail}
        failed = response_object(plan, record.response_id, created_at, status="failed",
                                 error=failed_error(error))
        events = [created, in_progress, {"type": "response.failed", "response": failed}]
    elif plan.overflow is not None:
        error = plan.overflow
        record.error = {"message": error.message, "detail": error.detail}
        events = [created, overflow_event(error, emu.overflow_wording)]
    elif fault is not None and fault.kind == "failed":
        err = {"code": fault.code, "message": fault.message}
        failed = response_object(plan, record.response_id, created_at, status="failed", error=err)
        events = [created, in_progress, {"type": "response.failed", "response": failed}]
    else:
        final, item_events = _generate(emu, plan, created_at)
        terminal = {"type": f"response.{final['status']}", "response": final}
        if emu.llama_server:  # beside the response, as its response.completed has them
            terminal["timings"] = llama_timings(emu, plan, final["usage"]["output_tokens"])
        events = [created, in_progress, *item_events, terminal]
    cut = fault if fault is not None and fault.kind in ("drop", "error_event") else None
    if cut is not None:
        events = events[: cut.after_events]
    for seq, event in enumerate(events):
        if event["type"] == "error":
            record.outcome = "error"
            event = {**event, "param": None} if "code" in event else event
        elif event["type"] == "response.failed":
            record.outcome = "failed"
        elif final is not None and event.get("response") is final:
            emu.store(plan, final)
            record.outcome = final["status"]
        yield sse({**event, "sequence_number": seq})
        await trio.sleep(emu.token_delay if event["type"] in DELTA_EVENTS else 0)
    if cut is not None and cut.kind == "drop":
        raise DropConnection
    if cut is not None:  # error_event
        record.outcome = "error"
        error_event = {"type": "error", "code": cut.code, "message": cut.message, "param": None}
        yield sse({**error_event, "sequence_number": len(events)})
