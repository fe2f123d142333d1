"""HTTP layer: quart-trio routes, the ASGI wrapper, and `serve_emulator`."""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from .answers import error_response, json_response, plain_body, stream_body
from .auth import check_request
from .chat import chat_plain, chat_stream, engine_turn, plan_chat
from .loading import jit_load, load
from .messages import messages_error, missing_count, missing_route, plan_messages
from .messages_stream import message_object, messages_stream, new_message_id
from .script import DropConnection
from .state import Emulator, RequestRecord
from .validate import ApiError

RECORD_KEY = "lmstudio_emulator.record"


class EmulatorASGI:
    """ASGI wrapper: shields sends (so hypercorn can close connections), logs every HTTP
    request as a RequestRecord, turns DropConnection into an abrupt close, and finalizes
    the record (outcome, `done`) without awaiting once the app returns or is cancelled."""

    def __init__(self, app: Any, emu: Emulator) -> None:
        self.app = app
        self.emu = emu

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope["headers"]}
        record = RequestRecord(method=scope["method"], path=scope["path"], headers=headers)
        scope[RECORD_KEY] = record
        self.emu.log.append(record)
        finished = False

        async def shielded_send(message: Any) -> None:
            nonlocal finished
            if message["type"] == "http.response.start":
                record.status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            with trio.CancelScope(shield=True):
                await send(message)

        try:
            await self.app(scope, receive, shielded_send)
        except* DropConnection:
            record.outcome = "dropped"  # returning without finishing closes the connection
        except* Exception:
            record.outcome = record.outcome or "error"  # an emulator bug; hypercorn logs it
            raise
        finally:
            if record.outcome is None:
                if not finished:
                    record.outcome = "cancelled"
                elif (record.status or 500) >= 500:
                    record.outcome = "error"
                else:
                    record.outcome = "completed" if record.status < 400 else "rejected"
            record.finished = trio.current_time()
            record.done.set()


def create_app(emu: Emulator) -> QuartTrio:
    """A quart-trio app emulating LM Studio's HTTP API over `emu`."""
    app = QuartTrio("lmstudio_emulator")
    app.config.update(RESPONSE_TIMEOUT=None, BODY_TIMEOUT=None, MAX_CONTENT_LENGTH=None)

    def current_record() -> RequestRecord:
        return request.scope[RECORD_KEY]

    async def read_json(record: RequestRecord) -> Any:
        raw = await request.get_data()
        try:
            record.body = json.loads(raw) if raw else None
        except ValueError as exc:
            raise ApiError(f"Invalid JSON in request body: {exc}") from None
        return record.body

    @app.before_request
    async def other_server() -> Response | None:
        """With ``emu.lmstudio_api`` off it is a plain OpenAI-compatible server (llama-server,
        vLLM): no LM Studio endpoints, so no listing of loaded contexts."""
        if not emu.lmstudio_api and (request.path.startswith("/api/")
                                     or request.path == "/lmstudio-greeting"):
            return json_response({"error": {"message": "File Not Found", "code": 404}}, 404)
        return None

    @app.before_request
    async def require_token() -> Response | None:
        refused = check_request(emu.api_key)  # "Require Authentication", when on
        if refused is not None:
            current_record().outcome = "rejected"
        return refused

    @app.get("/lmstudio-greeting")
    async def greeting() -> Response:
        return json_response({"lmstudio": True})

    @app.get("/props")
    async def props() -> Response:
        """llama-server's settings; lmsd tells llama-server from other servers by them."""
        if not emu.llama_server:
            return json_response({"error": {"message": "File Not Found", "code": 404}}, 404)
        first = next(iter(emu.models.values()), None)  # one model, one slot size
        n_ctx = first.context_length if first is not None and first.context_length else 32768
        return json_response({"default_generation_settings": {"n_ctx": n_ctx},
                              "build_info": "b1-emulator"})

    @app.get("/v1/models")
    async def openai_models() -> Response:
        async with engine_turn(emu):  # llama-cpp-python's listing takes its one lock
            owned_by = emu.owned_by
            if emu.llama_server and owned_by == "organization_owner":
                owned_by = "llamacpp"  # llama-server's rows say so
            data = [
                {"id": m.key, "object": "model", "owned_by": owned_by}
                for m in emu.models.values()
                if m.loaded
            ]
        return json_response({"object": "list", "data": data})

    @app.get("/api/v1/models")
    async def native_models() -> Response:
        models = [
            {
                "type": "llm",
                "key": m.key,
                "display_name": m.display_name,
                "publisher": m.publisher,
                "architecture": m.architecture,
                "quantization": {"name": "Q4_K_M", "bits_per_weight": 4},
                "size_bytes": 17_000_000_000,
                "params_string": None,
                "max_context_length": m.max_context_length,
                "format": "gguf",
                "loaded_instances": (
                    [
                        {
                            "id": m.key,
                            "config": {
                                "context_length": m.context_length,
                                "eval_batch_size": 512,
                                "flash_attention": True,
                                "num_experts": None,
                                "offload_kv_cache_to_gpu": True,
                                "parallel": m.parallel,
                            },
                        }
                    ]
                    if m.loaded
                    else []
                ),
                "capabilities": {"vision": m.vision, "trained_for_tool_use": True},
            }
            for m in emu.models.values()
        ]
        return json_response({"models": models})

    @app.get("/api/v0/models")
    async def v0_models() -> Response:
        data = []
        for m in emu.models.values():
            entry = {
                "id": m.key,
                "object": "model",
                "type": "vlm" if m.vision else "llm",
                "publisher": m.publisher,
                "arch": m.architecture,
                "compatibility_type": "gguf",
                "quantization": "Q4_K_M",
                "state": "loaded" if m.loaded else "not-loaded",
                "max_context_length": m.max_context_length,
                "capabilities": ["tool_use"],
            }
            if m.loaded:
                entry["loaded_context_length"] = m.context_length
            data.append(entry)
        return json_response({"object": "list", "data": data})

    @app.post("/api/v1/models/load")
    async def load_model() -> Response:
        record = current_record()
        try:
            body = await read_json(record)
            if not isinstance(body, dict) or not isinstance(body.get("model"), str):
                raise ApiError("'model' is required", param="model", code="invalid_type")
            started = time.monotonic()
            model = await load(emu, body["model"], body.get("context_length"), "rest")
        except ApiError as error:
            return error_response(record, error)
        return json_response(
            {
                "type": "llm",
                "instance_id": model.key,
                "load_time_seconds": round(time.monotonic() - started + 0.5, 3),
                "status": "loaded",
                "load_config": {"context_length": model.context_length},
            }
        )

    @app.post("/api/v1/models/unload")
    async def unload_model() -> Response:
        record = current_record()
        try:
            body = await read_json(record)
            instance = body.get("instance_id") if isinstance(body, dict) else None
            emu.unload_model(str(instance))
        except ApiError as error:
            return error_response(record, error)
        return json_response({"instance_id": instance})

    @app.post("/v1/responses")
    async def responses() -> Response:
        record = current_record()
        try:
            body = await read_json(record)
            await jit_load(emu, body)
            plan = emu.plan(record, body)
        except ApiError as error:
            return error_response(record, error)
        fault = record.fault = emu.next_fault() if plan.overflow is None else None
        if fault is not None:
            if fault.kind == "http":
                return error_response(record, ApiError(fault.message, status=fault.status))
            if fault.kind == "hang":
                await trio.sleep_forever()
            if fault.kind == "slow_first_byte":
                await trio.sleep(fault.seconds)
        if record.stream:
            return Response(
                stream_body(emu, plan, fault),
                content_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        return await plain_body(emu, plan, fault)

    @app.post("/v1/chat/completions")
    async def chat_completions() -> Response:
        record = current_record()
        try:
            body = await read_json(record)
            await jit_load(emu, body)
            plan = plan_chat(emu, record, body)
        except ApiError as error:
            return error_response(record, error)
        if record.stream:
            return Response(
                chat_stream(emu, plan),
                content_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        return json_response(await chat_plain(emu, plan))

    @app.post("/v1/messages")
    async def messages() -> Response:
        record = current_record()
        if (missing := missing_route(emu)) is not None:
            record.outcome = "rejected"
            return missing
        try:
            body = await read_json(record)
            await jit_load(emu, body)
            plan = plan_messages(emu, record, body)
        except ApiError as error:
            record.error = {"message": error.message}
            record.outcome = "rejected" if error.status < 500 else "error"
            return messages_error(emu, error)
        fault = record.fault = emu.next_fault() if plan.overflow is None else None
        if fault is not None:
            if fault.kind == "http":
                record.outcome = "error" if fault.status >= 500 else "rejected"
                return messages_error(emu, ApiError(fault.message, status=fault.status))
            if fault.kind == "hang":
                await trio.sleep_forever()
            if fault.kind == "slow_first_byte":
                await trio.sleep(fault.seconds)
        if record.stream:
            return Response(messages_stream(emu, plan, fault),
                            content_type="text/event-stream",
                            headers={"Cache-Control": "no-cache"})
        if fault is not None and fault.kind in ("error_event", "failed", "drop"):
            record.outcome = "error"
            return messages_error(emu, ApiError(fault.message or "Generation failed",
                                                status=500))
        await trio.sleep(emu.prefill_seconds_per_token * plan.uncached)
        reply = emu.next_reply(record)
        record.response_id = new_message_id(emu)
        record.outcome = "incomplete" if reply.incomplete else "completed"
        return json_response(message_object(emu, plan, reply, record.response_id))

    @app.post("/v1/messages/count_tokens")
    async def count_message_tokens() -> Response:
        record = current_record()
        if emu.count_gate is not None:
            await emu.count_gate.wait()
        if (missing := missing_count(emu, request.path)) is not None:
            record.outcome = "rejected"
            return missing
        try:
            plan = plan_messages(emu, record, await read_json(record), count=True)
        except ApiError as error:
            record.outcome = "rejected" if error.status < 500 else "error"
            return messages_error(emu, error)
        record.outcome = "completed"
        return json_response({"input_tokens": len(plan.context_tokens)})

    @app.errorhandler(404)
    @app.errorhandler(405)
    async def unexpected(_: Exception) -> Response:
        # LM Studio answers unknown endpoints with 200 and an error string.
        current_record().outcome = "rejected"
        message = f"Unexpected endpoint or method. ({request.method} {request.path})"
        return json_response({"error": message + ". Returning 200 anyway"})

    return app


async def serve_emulator(
    nursery: trio.Nursery, emu: Emulator, *, host: str = "127.0.0.1", port: int = 0
) -> str:
    """Serve `emu` with hypercorn in `nursery` until it is cancelled; return the base URL."""
    app = create_app(emu)
    app.asgi_app = EmulatorASGI(app.asgi_app, emu)  # type: ignore[method-assign]
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.loglevel = "WARNING"
    config.graceful_timeout = 0.5
    binds = await nursery.start(partial(serve, app, config, shutdown_trigger=trio.sleep_forever))
    emu.url = binds[0]
    return emu.url
